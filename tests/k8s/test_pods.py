"""Pods of admitted jobs through KubeClient, against the emulator over HTTP."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api

from domain.errors import InvalidInput
from k8s.client import KubeClient
from k8s.emulator import START_SECONDS, EmulatorServer
from k8s.errors import KubeApiError, KubeForbidden, KubeTransient
from k8s.pods import (
    LABEL_ATTEMPT,
    LABEL_JOB_ID,
    LABEL_POOL,
    LABEL_PRIORITY_CLASS,
    LABEL_PROJECT_ID,
    MANAGED_BY,
    pod_name,
)
from tests.k8s.conftest import (
    NAMESPACE,
    list_names,
    pod_body,
    pod_request,
    read_pod,
    restricted_pod,
    wait_for,
    wait_running,
)


def test_pod_name_is_deterministic_and_a_dns_label() -> None:
    job = uuid.uuid4()
    name = pod_name(job, 12)
    assert name == f"qf-{job}-12"
    assert name == pod_name(job, 12)
    assert len(pod_name(job, 2**31)) <= 63
    assert name == name.lower()


def test_created_pod_carries_the_contract(kube: KubeClient, core: CoreV1Api) -> None:
    req = pod_request(gpu=2, cpu=8, priority_class="high", pool="h100")
    info = kube.create_job_pod(req)

    pod = read_pod(core, info.name)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == f"qf-{req.job_id}-0"
    assert meta["labels"] == {
        MANAGED_BY: "quotaflow",
        LABEL_JOB_ID: str(req.job_id),
        LABEL_ATTEMPT: "0",
        LABEL_PROJECT_ID: str(req.project_id),
        LABEL_POOL: "h100",
        LABEL_PRIORITY_CLASS: "high",
    }
    assert meta["annotations"]["quotaflow.io/project-path"] == "root.team.proj"
    assert meta["annotations"]["quotaflow.io/submitted-by"] == "alice"
    assert spec["priorityClassName"] == "quotaflow-high"
    assert spec["priority"] == 10000  # resolved by the emulated Priority admission
    assert spec["restartPolicy"] == "Never"
    container = spec["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "8", "nvidia.com/gpu": "2"}
    assert container["resources"]["limits"] == {"cpu": "8", "nvidia.com/gpu": "2"}
    assert container["image"] == "busybox:1.36"
    assert container["command"] == ["sleep", "2147483647"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert info.uid == meta["uid"]
    assert (info.job_id, info.attempt, info.pool) == (req.job_id, 0, "h100")
    assert info.phase == "Pending"


def test_cpu_only_pod_requests_no_gpu(kube: KubeClient, core: CoreV1Api) -> None:
    info = kube.create_job_pod(pod_request(gpu=0, cpu=1))
    container = read_pod(core, info.name)["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}


def test_job_image_command_and_placement_are_passed_through(
    kube: KubeClient, core: CoreV1Api
) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100"]}]}
                ]
            }
        }
    }
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    req = pod_request(
        image="ghcr.io/acme/train:1.2",
        command=["python", "train.py"],
        node_selector={"disk": "ssd"},
        affinity=affinity,
        tolerations=[toleration],
    )
    spec = read_pod(core, kube.create_job_pod(req).name)["spec"]
    assert spec["containers"][0]["image"] == "ghcr.io/acme/train:1.2"
    assert spec["containers"][0]["command"] == ["python", "train.py"]
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["affinity"] == affinity
    assert toleration in spec["tolerations"]
    # A job image keeps its own (non-root) user: only the default workload pins "nobody".
    assert "runAsUser" not in spec["securityContext"]


def test_create_twice_returns_the_same_pod(kube: KubeClient, emulator: EmulatorServer) -> None:
    req = pod_request()
    first = kube.create_job_pod(req)
    second = kube.create_job_pod(req)
    assert second.uid == first.uid
    assert [p["metadata"]["uid"] for p in emulator.pods()] == [first.uid]


def test_concurrent_creates_make_one_pod(kube: KubeClient, emulator: EmulatorServer) -> None:
    req = pod_request()
    with ThreadPoolExecutor(max_workers=16) as pool:
        infos = list(pool.map(lambda _: kube.create_job_pod(req), range(32)))
    assert len({info.uid for info in infos}) == 1
    assert len(emulator.pods()) == 1


def test_a_name_taken_by_another_job_is_not_success(kube: KubeClient, core: CoreV1Api) -> None:
    req = pod_request()
    manifest = kube.pod_manifest(req)
    manifest["metadata"]["labels"]["quotaflow.io/job-id"] = str(uuid.uuid4())
    core.create_namespaced_pod(NAMESPACE, pod_body(manifest))
    with pytest.raises(KubeApiError) as caught:
        kube.create_job_pod(req)
    assert caught.value.status == 409
    assert not caught.value.retryable


def test_unknown_priority_class_is_forbidden(kube: KubeClient) -> None:
    with pytest.raises(KubeForbidden) as caught:
        kube.create_job_pod(pod_request(priority_class="urgent"))
    assert caught.value.status == 403
    assert "no PriorityClass with name quotaflow-urgent was found" in caught.value.message
    assert not caught.value.retryable


def test_injected_500_on_create_is_transient(kube: KubeClient, emulator: EmulatorServer) -> None:
    emulator.inject_fault("pods.create", status=500)
    req = pod_request()
    with pytest.raises(KubeTransient) as caught:
        kube.create_job_pod(req)
    assert caught.value.retryable
    assert caught.value.status == 500
    assert kube.create_job_pod(req).job_id == req.job_id  # the fault was used up


def test_injected_403_on_create_is_forbidden(kube: KubeClient, emulator: EmulatorServer) -> None:
    emulator.inject_fault("pods.create", status=403)
    with pytest.raises(KubeForbidden):
        kube.create_job_pod(pod_request())


def test_slow_server_times_out_as_transient_and_create_stays_idempotent(
    emulator: EmulatorServer, kube: KubeClient
) -> None:
    kube.request_timeout_seconds = 0.3
    emulator.inject_fault("pods.create", delay_seconds=0.6)
    req = pod_request()
    with pytest.raises(KubeTransient):
        kube.create_job_pod(req)
    # The slow create still happened server-side; the retry finds that very pod.
    wait_for(lambda: emulator.pods())
    assert kube.create_job_pod(req).uid == emulator.pods()[0]["metadata"]["uid"]


def test_unreachable_server_is_transient() -> None:
    closed = ApiClient(Configuration(host="http://127.0.0.1:9", retries=0))  # nothing on 9
    client = KubeClient(closed, NAMESPACE, request_timeout_seconds=1)
    with pytest.raises(KubeTransient):
        client.list_job_pods()


def test_phases_progress_to_succeeded(kube: KubeClient) -> None:
    info = kube.create_job_pod(pod_request(run_seconds=0.2))
    assert info.phase == "Pending"
    wait_running(kube, info.name)
    wait_for(lambda: kube.pod_phase(info.name) == "Succeeded")
    done = kube.get_pod(info.name)
    assert done is not None
    assert done.exit_code == 0
    assert done.node_name == "emulator-node"


def test_failed_outcome(kube: KubeClient) -> None:
    info = kube.create_job_pod(pod_request(run_seconds=0.1, run_outcome="Failed"))
    wait_for(lambda: kube.pod_phase(info.name) == "Failed")
    failed = kube.get_pod(info.name)
    assert failed is not None
    assert failed.exit_code == 1


def test_no_run_seconds_runs_until_deleted(kube: KubeClient) -> None:
    info = kube.create_job_pod(pod_request())
    wait_running(kube, info.name)
    assert kube.pod_phase(info.name) == "Running"
    assert kube.delete_pod(info.name, grace_seconds=0) is True
    assert kube.pod_phase(info.name) is None
    assert kube.get_pod(info.name) is None


def test_delete_of_a_missing_pod_is_false(kube: KubeClient) -> None:
    assert kube.delete_pod("qf-missing-0", grace_seconds=0) is False


def test_graceful_deletion_keeps_the_pod_terminating(kube: KubeClient) -> None:
    info = kube.create_job_pod(pod_request())
    wait_running(kube, info.name)
    assert kube.delete_pod(info.name, grace_seconds=1)
    terminating = kube.get_pod(info.name)
    assert terminating is not None
    assert terminating.deletion_pending
    assert terminating.deletion_timestamp is not None
    assert terminating.phase == "Running"
    # A second, longer delete does not extend the grace period; the pod goes after ~1 s.
    assert kube.delete_pod(info.name, grace_seconds=30)
    wait_for(lambda: kube.get_pod(info.name) is None, timeout=10)


def test_pending_pod_is_deleted_at_once(kube: KubeClient, core: CoreV1Api) -> None:
    # No kubelet runs a pod not bound to a node yet, so its grace period is moot.
    manifest = kube.pod_manifest(pod_request())
    manifest["metadata"]["annotations"][START_SECONDS] = "30"
    core.create_namespaced_pod(NAMESPACE, pod_body(manifest))
    name = manifest["metadata"]["name"]
    assert kube.pod_phase(name) == "Pending"
    assert kube.delete_pod(name, grace_seconds=30)
    assert kube.get_pod(name) is None


def test_list_job_pods_by_selector(kube: KubeClient, core: CoreV1Api) -> None:
    job = uuid.uuid4()
    first = kube.create_job_pod(pod_request(job_id=job, attempt=0))
    second = kube.create_job_pod(pod_request(job_id=job, attempt=1))
    other = kube.create_job_pod(pod_request(pool="cpu"))
    core.create_namespaced_pod(NAMESPACE, restricted_pod("not-ours", {"app": "web"}))
    assert {p.name for p in kube.list_job_pods(job)} == {first.name, second.name}
    assert {p.name for p in kube.list_job_pods()} == {first.name, second.name, other.name}

    def names(selector: str) -> set[str]:
        return list_names(core, selector)

    assert names("quotaflow.io/pool!=a100") == {other.name, "not-ours"}
    assert names("quotaflow.io/attempt in (1,7)") == {second.name}
    assert names("quotaflow.io/pool notin (a100),app.kubernetes.io/managed-by") == {other.name}
    assert names("!app.kubernetes.io/managed-by") == {"not-ours"}
    assert names("app=web,quotaflow.io/job-id") == set()


def test_list_carries_a_resource_version(core: CoreV1Api, kube: KubeClient) -> None:
    def list_version() -> int:
        pods = core.api_client.sanitize_for_serialization(core.list_namespaced_pod(NAMESPACE))
        return int(pods["metadata"]["resourceVersion"])

    before = list_version()
    info = kube.create_job_pod(pod_request())
    after = list_version()
    assert after > before
    assert int(info.resource_version) == after


def test_restricted_pod_security_is_enforced(core: CoreV1Api) -> None:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(
            NAMESPACE,
            pod_body(
                {
                    "metadata": {"name": "root-pod"},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                }
            ),
        )
    assert caught.value.status == 403
    body = json.loads(caught.value.body or "")
    assert body["reason"] == "Forbidden"
    assert 'violates PodSecurity "restricted:latest"' in body["message"]
    assert "allowPrivilegeEscalation != false" in body["message"]


def test_connection_dropped_before_an_answer_is_transient(
    kube: KubeClient, emulator: EmulatorServer
) -> None:
    emulator.inject_fault("pods.create", drop=True)
    req = pod_request()
    with pytest.raises(KubeTransient):
        kube.create_job_pod(req)
    assert emulator.pods() == []  # a dropped request is not handled
    assert kube.create_job_pod(req).job_id == req.job_id


def test_malformed_placement_is_invalid_input(kube: KubeClient, emulator: EmulatorServer) -> None:
    with pytest.raises(InvalidInput) as caught:
        kube.create_job_pod(pod_request(affinity={"nodeAffinity": "on a100 nodes please"}))
    assert caught.value.field == "affinity_config"
    assert not caught.value.retryable
    assert emulator.pods() == []
