"""The emulator speaks the API server's wire format to the official client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client import (
    ApiClient,
    CoreV1Api,
    PolicyV1Api,
    SchedulingV1Api,
    V1PodDisruptionBudget,
    V1PriorityClass,
)
from kubernetes.client.exceptions import ApiException

from k8s.client import KubeClient
from k8s.config import emulator_configuration
from k8s.emulator import EmulatorAdmin, EmulatorServer, Fault
from k8s.emulator.selectors import SelectorError, label_selector, parse_selector
from tests.k8s.conftest import NAMESPACE, budget, pod_body, pod_request, restricted_pod, wait_for


def status_of(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.value.body or "")
    return body


def test_not_found_status(core: CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_pod("ghost", NAMESPACE)
    assert caught.value.status == 404
    assert status_of(caught) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "ghost" not found',
        "reason": "NotFound",
        "details": {"name": "ghost", "kind": "pods"},
        "code": 404,
    }


def test_already_exists_status(core: CoreV1Api) -> None:
    core.create_namespaced_pod(NAMESPACE, restricted_pod("twin"))
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(NAMESPACE, restricted_pod("twin"))
    assert caught.value.status == 409
    assert status_of(caught) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "twin" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "twin", "kind": "pods"},
        "code": 409,
    }


def test_invalid_status(core: CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(
            NAMESPACE,
            pod_body({"metadata": {"name": "noimage"}, "spec": {"containers": [{"name": "c"}]}}),
        )
    assert caught.value.status == 422
    assert status_of(caught) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Pod "noimage" is invalid: spec.containers[0].image: Required value',
        "reason": "Invalid",
        "details": {
            "name": "noimage",
            "kind": "Pod",
            "causes": [
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value",
                    "field": "spec.containers[0].image",
                }
            ],
        },
        "code": 422,
    }


def test_gpu_requests_must_equal_limits(core: CoreV1Api, kube: KubeClient) -> None:
    manifest = kube.pod_manifest(pod_request(gpu=2))
    manifest["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "1"
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(NAMESPACE, pod_body(manifest))
    assert caught.value.status == 422
    assert "must be equal to nvidia.com/gpu limit" in status_of(caught)["message"]


def test_injected_errors_carry_real_status_bodies(
    core: CoreV1Api, emulator: EmulatorServer
) -> None:
    emulator.inject_fault("pods.get", status=500, name="some-pod")
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_pod("some-pod", NAMESPACE)
    assert caught.value.status == 500
    assert status_of(caught) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Internal error occurred: injected fault",
        "reason": "InternalError",
        "details": {"causes": [{"message": "injected fault"}]},
        "code": 500,
    }
    emulator.inject_fault("pods.list", status=403)
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod(NAMESPACE)
    assert caught.value.status == 403
    assert status_of(caught)["reason"] == "Forbidden"


def test_unknown_paths_and_methods(core: CoreV1Api, kube: KubeClient) -> None:
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_config_map(NAMESPACE)
    assert caught.value.status == 404
    assert status_of(caught)["message"] == "the server could not find the requested resource"
    pod = kube.create_job_pod(pod_request())
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_pod(pod.name, NAMESPACE, {"metadata": {"labels": {"a": "b"}}})
    assert caught.value.status == 405


def test_bad_label_selector_is_400(core: CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod(NAMESPACE, label_selector="a in b")
    assert caught.value.status == 400


def test_objects_have_uid_timestamps_and_growing_resource_versions(
    core: CoreV1Api, api_client: ApiClient, emulator: EmulatorServer
) -> None:
    first = api_client.sanitize_for_serialization(
        core.create_namespaced_pod(NAMESPACE, restricted_pod("one"))
    )
    second = api_client.sanitize_for_serialization(
        core.create_namespaced_pod(NAMESPACE, restricted_pod("two"))
    )
    for pod in (first, second):
        assert len(pod["metadata"]["uid"]) == 36
        assert pod["metadata"]["creationTimestamp"] is not None
        assert pod["metadata"]["namespace"] == NAMESPACE
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    # On the wire, timestamps are RFC 3339 in UTC with a Z, as a real server writes them.
    served = emulator.pod("one", NAMESPACE)
    assert served is not None
    assert served["metadata"]["creationTimestamp"].endswith("Z")


def test_watch_streams_changes_resumes_and_expires(
    core: CoreV1Api, emulator: EmulatorServer
) -> None:
    start = core.api_client.sanitize_for_serialization(core.list_namespaced_pod(NAMESPACE))
    core.create_namespaced_pod(NAMESPACE, restricted_pod("watched"))
    wait_for(lambda: emulator.pod("watched", NAMESPACE)["status"]["phase"] == "Running")  # type: ignore[index]
    core.delete_namespaced_pod("watched", NAMESPACE, grace_period_seconds=0)

    events = list(
        watch.Watch().stream(
            core.list_namespaced_pod,
            NAMESPACE,
            resource_version=start["metadata"]["resourceVersion"],
            timeout_seconds=1,
            allow_watch_bookmarks=True,
        )
    )
    kinds = [(e["type"], e["raw_object"]["status"].get("phase")) for e in events[:-1]]
    assert kinds == [("ADDED", "Pending"), ("MODIFIED", "Running"), ("DELETED", "Running")]
    versions = [int(e["raw_object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)
    assert events[-1]["type"] == "BOOKMARK"
    assert events[2]["object"].metadata.deletion_timestamp is not None

    # Resuming after the ADDED event replays only what followed it.
    resumed = []
    for event in watch.Watch().stream(
        core.list_namespaced_pod, NAMESPACE, resource_version=str(versions[0]), timeout_seconds=5
    ):
        resumed.append(event["type"])
        if len(resumed) == 2:
            break
    assert resumed == ["MODIFIED", "DELETED"]

    emulator.compact()
    with pytest.raises(ApiException) as caught:
        list(
            watch.Watch().stream(
                core.list_namespaced_pod,
                NAMESPACE,
                resource_version=str(versions[0]),
                timeout_seconds=1,
            )
        )
    assert caught.value.status == 410
    assert "too old resource version" in str(caught.value.reason)


def test_watch_without_resource_version_starts_with_the_current_state(core: CoreV1Api) -> None:
    core.create_namespaced_pod(NAMESPACE, restricted_pod("existing", {"team": "a"}))
    core.create_namespaced_pod(NAMESPACE, restricted_pod("other", {"team": "b"}))
    stream = watch.Watch().stream(
        core.list_namespaced_pod, NAMESPACE, label_selector="team=a", timeout_seconds=5
    )
    # The current state first, as synthetic ADDED events, then its changes (it starts running).
    events = [next(stream), next(stream)]
    stream.close()
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "existing"),
        ("MODIFIED", "existing"),
    ]


def test_disruption_budgets_crud(policy: PolicyV1Api, api_client: ApiClient) -> None:
    body = V1PodDisruptionBudget.from_dict(budget("keep", {"app": "x"}, minAvailable=1))
    assert body is not None
    policy.create_namespaced_pod_disruption_budget(NAMESPACE, body)
    read = api_client.sanitize_for_serialization(
        policy.read_namespaced_pod_disruption_budget("keep", NAMESPACE)
    )
    assert read["spec"]["minAvailable"] == 1
    assert read["status"]["disruptionsAllowed"] == 0
    listed = policy.list_namespaced_pod_disruption_budget(NAMESPACE)
    assert [b.metadata.name for b in listed.items if b.metadata] == ["keep"]
    policy.delete_namespaced_pod_disruption_budget("keep", NAMESPACE)
    with pytest.raises(ApiException) as caught:
        policy.read_namespaced_pod_disruption_budget("keep", NAMESPACE)
    assert status_of(caught)["message"] == 'poddisruptionbudgets.policy "keep" not found'
    invalid = V1PodDisruptionBudget.from_dict(
        budget("both", {"app": "x"}, minAvailable=1, maxUnavailable=1)
    )
    assert invalid is not None
    with pytest.raises(ApiException) as caught:
        policy.create_namespaced_pod_disruption_budget(NAMESPACE, invalid)
    assert caught.value.status == 422


def test_priority_classes_can_be_created(api_client: ApiClient, kube: KubeClient) -> None:
    scheduling = SchedulingV1Api(api_client)
    body = V1PriorityClass.from_dict({"metadata": {"name": "quotaflow-urgent"}, "value": 50000})
    assert body is not None
    scheduling.create_priority_class(body)
    info = kube.create_job_pod(pod_request(priority_class="urgent"))
    assert info.priority_class_name == "quotaflow-urgent"


def test_admin_http_api(emulator: EmulatorServer, kube: KubeClient) -> None:
    admin = EmulatorAdmin(emulator.url)
    fault = admin.inject_fault("pods.evict", status=503, times=2)
    assert fault == Fault(endpoint="pods.evict", status=503, times=2)
    assert admin.pending_faults() == [fault]
    assert emulator.pending_faults() == [fault]
    admin.clear_faults()
    assert admin.pending_faults() == []

    pod = kube.create_job_pod(pod_request())
    ended = admin.end_pod(pod.name, NAMESPACE, phase="Failed", message="OOMKilled")
    assert ended["status"]["phase"] == "Failed"
    assert ended["status"]["message"] == "OOMKilled"
    state = admin.state()
    assert [p["name"] for p in state["pods"]] == [pod.name]
    assert state["pods"][0]["phase"] == "Failed"
    assert admin.compact() == int(state["resourceVersion"])

    with pytest.raises(RuntimeError, match="HTTP 422"):
        admin._request("POST", "/_emulator/faults", {"endpoint": "pods.get"})


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="needs a status"):
        Fault(endpoint="pods.get")
    with pytest.raises(ValueError, match="either answers"):
        Fault(endpoint="pods.get", status=500, drop=True)


def test_concurrent_clients_and_watchers(emulator: EmulatorServer, kube: KubeClient) -> None:
    seen: list[list[str]] = [[] for _ in range(5)]
    start = kube.list_pods_at("app.kubernetes.io/managed-by=quotaflow")[1]

    def watcher(index: int) -> None:
        client = ApiClient(emulator_configuration(emulator.url))
        for event in watch.Watch().stream(
            CoreV1Api(client).list_namespaced_pod,
            NAMESPACE,
            resource_version=start,
            timeout_seconds=2,
        ):
            if event["type"] == "ADDED":
                seen[index].append(event["object"].metadata.name)
                if len(seen[index]) == 40:
                    break
        client.close()

    threads = [threading.Thread(target=watcher, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=10) as pool:
        created = set(pool.map(lambda _: kube.create_job_pod(pod_request()).name, range(40)))
    for thread in threads:
        thread.join()
    assert all(set(names) == created for names in seen)
    assert all(len(names) == 40 for names in seen)


def test_selectors() -> None:
    labels = {"a": "1", "b": "2"}
    assert parse_selector("a=1,b!=3").matches(labels)
    assert parse_selector("a==1").matches(labels)
    assert not parse_selector("a in (2, 3)").matches(labels)
    assert parse_selector("c notin (1),!c,a").matches(labels)
    assert parse_selector("").matches({})
    with pytest.raises(SelectorError):
        parse_selector("a >> b")
    selector = label_selector(
        {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]}
    )
    assert selector.matches(labels)
    assert not selector.matches({"a": "1"})
    assert label_selector({}).empty


def test_standalone_process_serves_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "k8s.emulator", "--port", "0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": os.getcwd()},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("kube emulator serving http://127.0.0.1:")
        url = line.split()[-1]
        client = ApiClient(emulator_configuration(url))
        kube = KubeClient(client, NAMESPACE)
        pod = kube.create_job_pod(pod_request())
        assert [p.name for p in kube.list_job_pods()] == [pod.name]
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_busy_port_fails_the_start(emulator: EmulatorServer) -> None:
    with pytest.raises(OSError), EmulatorServer(port=emulator.port):
        pass
