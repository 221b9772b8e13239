"""Evictions through policy/v1 pods/eviction, honouring PodDisruptionBudgets."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes.client import (
    CoreV1Api,
    PolicyV1Api,
    V1Eviction,
    V1ObjectMeta,
    V1PodDisruptionBudget,
)
from kubernetes.client.exceptions import ApiException

from domain.errors import QuotaflowError
from k8s.client import KubeClient
from k8s.emulator import EmulatorServer
from k8s.errors import EvictionBlocked, KubeApiError, KubeForbidden, KubeTransient
from k8s.models import BackoffPolicy, PodInfo
from k8s.pods import LABEL_POOL
from tests.k8s.conftest import NAMESPACE, budget, pod_request, read_pod, wait_for, wait_running

FAST = BackoffPolicy(initial_seconds=0.05, multiplier=2, max_seconds=0.2)


def create_budget(policy: PolicyV1Api, name: str, labels: dict[str, str], **spec: Any) -> None:
    body = V1PodDisruptionBudget.from_dict(budget(name, labels, **spec))
    assert body is not None
    policy.create_namespaced_pod_disruption_budget(NAMESPACE, body)


def budget_status(policy: PolicyV1Api, name: str) -> dict[str, Any]:
    pdb = policy.read_namespaced_pod_disruption_budget(name, NAMESPACE)
    raw: dict[str, Any] = policy.api_client.sanitize_for_serialization(pdb)
    return raw["status"]


def running_pods(kube: KubeClient, count: int, pool: str = "a100") -> list[PodInfo]:
    pods = [kube.create_job_pod(pod_request(pool=pool)) for _ in range(count)]
    for pod in pods:
        wait_running(kube, pod.name)
    return pods


def test_eviction_without_budget_evicts(kube: KubeClient, core: CoreV1Api) -> None:
    (pod,) = running_pods(kube, 1)
    result = kube.evict_pod(pod.name, grace_seconds=0)
    assert result.outcome == "evicted"
    assert result.attempts == 1
    assert kube.get_pod(pod.name) is None


def test_eviction_is_graceful_and_marks_the_disruption(kube: KubeClient, core: CoreV1Api) -> None:
    (pod,) = running_pods(kube, 1)
    kube.evict_pod(pod.name, grace_seconds=1)
    raw = read_pod(core, pod.name)
    assert raw["metadata"]["deletionGracePeriodSeconds"] == 1
    conditions = {c["type"]: c for c in raw["status"]["conditions"]}
    assert conditions["DisruptionTarget"]["reason"] == "EvictionByEvictionAPI"
    # Evicting a pod that is already terminating is accepted again, and changes nothing.
    assert kube.evict_pod(pod.name, grace_seconds=1).outcome == "evicted"
    wait_for(lambda: kube.get_pod(pod.name) is None, timeout=10)


def test_eviction_of_a_pod_already_gone_is_success(kube: KubeClient) -> None:
    result = kube.evict_pod("qf-never-existed-0")
    assert result.outcome == "already_gone"


def test_budget_blocks_then_allows_when_another_pod_runs(
    kube: KubeClient, policy: PolicyV1Api
) -> None:
    pod, _ = running_pods(kube, 2)
    create_budget(policy, "keep-two", {LABEL_POOL: "a100"}, minAvailable=2)
    assert budget_status(policy, "keep-two")["disruptionsAllowed"] == 0

    with pytest.raises(EvictionBlocked) as caught:
        kube.evict_pod(pod.name)
    assert caught.value.retryable
    assert caught.value.status == 429
    assert caught.value.reason == "TooManyRequests"
    assert kube.pod_phase(pod.name) == "Running"

    running_pods(kube, 1)  # scale up: three healthy pods, two required
    assert budget_status(policy, "keep-two")["disruptionsAllowed"] == 1
    assert kube.evict_pod(pod.name, grace_seconds=0).outcome == "evicted"


def test_429_body_is_the_real_servers(
    kube: KubeClient, core: CoreV1Api, policy: PolicyV1Api
) -> None:
    (pod,) = running_pods(kube, 1)
    create_budget(policy, "all", {LABEL_POOL: "a100"}, maxUnavailable=0)
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod_eviction(
            pod.name,
            NAMESPACE,
            V1Eviction(metadata=V1ObjectMeta(name=pod.name, namespace=NAMESPACE)),
        )
    assert caught.value.status == 429
    assert json.loads(caught.value.body or "") == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Cannot evict pod as it would violate the pod's disruption budget.",
        "reason": "TooManyRequests",
        "details": {
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": "The disruption budget all needs 1 healthy pods and has 1 currently",
                }
            ]
        },
        "code": 429,
    }


def test_deleting_the_budget_allows_the_eviction(kube: KubeClient, policy: PolicyV1Api) -> None:
    (pod,) = running_pods(kube, 1)
    create_budget(policy, "keep-one", {LABEL_POOL: "a100"}, minAvailable=1)
    with pytest.raises(EvictionBlocked):
        kube.evict_pod(pod.name)
    policy.delete_namespaced_pod_disruption_budget("keep-one", NAMESPACE)
    assert kube.evict_pod(pod.name).outcome == "evicted"


def test_max_unavailable_counts_terminating_pods_as_unavailable(
    kube: KubeClient, policy: PolicyV1Api
) -> None:
    first, second, _ = running_pods(kube, 3)
    create_budget(policy, "one-at-a-time", {LABEL_POOL: "a100"}, maxUnavailable=1)
    assert kube.evict_pod(first.name, grace_seconds=30).outcome == "evicted"
    with pytest.raises(EvictionBlocked):
        kube.evict_pod(second.name)


def test_percentage_budget(kube: KubeClient, policy: PolicyV1Api) -> None:
    pods = running_pods(kube, 4)
    create_budget(policy, "half", {LABEL_POOL: "a100"}, minAvailable="50%")
    status = budget_status(policy, "half")
    assert (status["expectedPods"], status["desiredHealthy"], status["disruptionsAllowed"]) == (
        4,
        2,
        2,
    )
    kube.evict_pod(pods[0].name, grace_seconds=30)
    kube.evict_pod(pods[1].name, grace_seconds=30)
    with pytest.raises(EvictionBlocked):
        kube.evict_pod(pods[2].name)


def test_budgets_only_cover_the_pods_they_select(kube: KubeClient, policy: PolicyV1Api) -> None:
    (cpu_pod,) = running_pods(kube, 1, pool="cpu")
    running_pods(kube, 1, pool="a100")
    create_budget(policy, "gpus", {LABEL_POOL: "a100"}, minAvailable=1)
    assert kube.evict_pod(cpu_pod.name).outcome == "evicted"


def test_pending_pods_are_not_protected(
    kube: KubeClient, policy: PolicyV1Api, core: CoreV1Api
) -> None:
    from k8s.emulator import START_SECONDS
    from tests.k8s.conftest import pod_body

    manifest = kube.pod_manifest(pod_request())
    manifest["metadata"]["annotations"][START_SECONDS] = "30"
    core.create_namespaced_pod(NAMESPACE, pod_body(manifest))
    create_budget(policy, "keep", {LABEL_POOL: "a100"}, minAvailable=1)
    assert kube.evict_pod(manifest["metadata"]["name"]).outcome == "evicted"


def test_two_budgets_over_one_pod_is_not_retryable(kube: KubeClient, policy: PolicyV1Api) -> None:
    (pod,) = running_pods(kube, 1)
    create_budget(policy, "one", {LABEL_POOL: "a100"}, minAvailable=0)
    create_budget(policy, "two", {"app.kubernetes.io/managed-by": "quotaflow"}, minAvailable=0)
    with pytest.raises(KubeApiError) as caught:
        kube.evict_until(pod.name, 0, deadline_seconds=5, backoff=FAST)
    assert caught.value.status == 500
    assert not caught.value.retryable
    assert "more than one PodDisruptionBudget" in caught.value.message


def test_evict_until_retries_through_429_until_the_budget_allows(
    kube: KubeClient, policy: PolicyV1Api
) -> None:
    (pod,) = running_pods(kube, 1)
    create_budget(policy, "hold", {LABEL_POOL: "a100"}, minAvailable=1)
    retries: list[tuple[str, int]] = []

    def release_later() -> None:
        time.sleep(0.4)
        policy.delete_namespaced_pod_disruption_budget("hold", NAMESPACE)

    releaser = threading.Thread(target=release_later)
    releaser.start()
    try:
        result = kube.evict_until(
            pod.name,
            0,
            deadline_seconds=10,
            backoff=FAST,
            on_retry=lambda error, attempt: retries.append((type(error).__name__, attempt)),
        )
    finally:
        releaser.join()
    assert result.outcome == "evicted"
    assert result.attempts >= 3
    assert retries[0] == ("EvictionBlocked", 1)
    assert len(retries) == result.attempts - 1


def test_evict_until_gives_up_at_the_deadline(kube: KubeClient, policy: PolicyV1Api) -> None:
    (pod,) = running_pods(kube, 1)
    create_budget(policy, "hold", {LABEL_POOL: "a100"}, minAvailable=1)
    started = time.monotonic()
    with pytest.raises(EvictionBlocked):
        kube.evict_until(pod.name, 0, deadline_seconds=0.5, backoff=FAST)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.0
    assert kube.pod_phase(pod.name) == "Running"


def test_injected_403_is_forbidden_and_not_retried(
    kube: KubeClient, emulator: EmulatorServer
) -> None:
    (pod,) = running_pods(kube, 1)
    emulator.inject_fault("pods.evict", status=403, times=5)
    with pytest.raises(KubeForbidden) as caught:
        kube.evict_until(pod.name, 0, deadline_seconds=5, backoff=FAST)
    assert not caught.value.retryable
    assert caught.value.status == 403
    assert "cannot create resource" in caught.value.message
    assert emulator.pending_faults()[0].times == 4  # exactly one request was made


def test_injected_500s_are_transient_and_retried(
    kube: KubeClient, emulator: EmulatorServer
) -> None:
    (pod,) = running_pods(kube, 1)
    emulator.inject_fault("pods.evict", status=500, times=1)
    with pytest.raises(KubeTransient) as caught:
        kube.evict_pod(pod.name)
    assert caught.value.retryable
    assert caught.value.status == 500

    emulator.inject_fault("pods.evict", status=503, times=2)
    result = kube.evict_until(pod.name, 0, deadline_seconds=5, backoff=FAST)
    assert result.outcome == "evicted"
    assert result.attempts == 3


def test_evict_until_raises_the_last_transient_error(
    kube: KubeClient, emulator: EmulatorServer
) -> None:
    (pod,) = running_pods(kube, 1)
    emulator.inject_fault("pods.evict", status=500, times=1000)
    with pytest.raises(KubeTransient):
        kube.evict_until(pod.name, 0, deadline_seconds=0.3, backoff=FAST)


def test_a_timed_out_eviction_is_retried_into_already_gone(
    kube: KubeClient, emulator: EmulatorServer
) -> None:
    (pod,) = running_pods(kube, 1)
    kube.request_timeout_seconds = 0.3
    # The server evicts but answers too late; the retry finds the pod gone: success.
    emulator.inject_fault("pods.evict", delay_seconds=0.6)
    result = kube.evict_until(pod.name, 0, deadline_seconds=5, backoff=FAST)
    assert result.outcome == "already_gone"
    assert result.attempts == 2


def test_every_error_is_a_quotaflow_error(kube: KubeClient, emulator: EmulatorServer) -> None:
    for code in (401, 403, 409, 422, 429, 500, 503, 504):
        emulator.inject_fault("pods.evict", status=code)
        with pytest.raises(QuotaflowError) as caught:
            kube.evict_pod("qf-anything-0")
        assert caught.value.details["status"] == code
        assert caught.value.retryable == (code in (429, 500, 503, 504))
