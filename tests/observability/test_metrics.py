"""Each series, driven through the code that moves it, read back over HTTP.

The registry is the process's: counters only grow, so every assertion compares two scrapes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC

import pytest
from kubernetes.client import PolicyV1Api, V1PodDisruptionBudget
from prometheus_client import REGISTRY
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.base import Deps
from activities.preemption import PreemptionActivities
from devstack.postgres import free_port
from k8s.client import KubeClient
from k8s.emulator import EmulatorServer
from observability import metrics as qf_metrics
from observability.server import MetricsServer, start_metrics_server
from store import Store
from store.db import Database
from tests.factories import seed
from tests.k8s.conftest import budget, pod_request, wait_running
from tests.observability.conftest import scrape
from tests.stack import stack_settings
from workflows.shared import EvictInput, PreemptionInput


def test_queue_depth_and_pool_gauges_read_the_database(
    store: Store, metrics: MetricsServer
) -> None:
    world = seed(store, gpus=8, cpus=64)
    for _ in range(3):
        world.submit(gpu=1)
    world.submit(gpu=1, priority_class="high")

    before = scrape(metrics.url)
    assert before.value("quotaflow_database_up") == 1
    assert before.value("quotaflow_queue_depth", pool="main", priority_class="normal") == 3
    assert before.value("quotaflow_queue_depth", pool="main", priority_class="high") == 1
    # an empty queue is a zero, not a missing series
    assert before.has("quotaflow_queue_depth", pool="main", priority_class="low")
    assert before.value("quotaflow_queue_depth", pool="main", priority_class="low") == 0
    assert before.value("quotaflow_pool_capacity", pool="main", resource="gpu") == 8
    assert before.value("quotaflow_pool_capacity", pool="main", resource="cpu") == 64
    assert before.value("quotaflow_pool_in_use", pool="main", resource="gpu") == 0
    assert before.value("quotaflow_preemptions_active", pool="main") == 0

    assert len(store.queue.claim("main", 10).admitted) == 4

    after = scrape(metrics.url)
    assert after.value("quotaflow_queue_depth", pool="main") == 0
    assert after.value("quotaflow_pool_in_use", pool="main", resource="gpu") == 4


def test_admission_latency_is_observed_once_per_admission(
    store: Store, metrics: MetricsServer
) -> None:
    world = seed(store, gpus=8)
    world.submit(gpu=1, priority_class="low")
    world.submit(gpu=1, priority_class="low")
    series = {"pool": "main", "priority_class": "low", "via": "claim"}
    before = scrape(metrics.url)

    admitted = store.queue.claim("main", 10).admitted
    qf_metrics.observe_admissions(store, admitted, via="claim")
    qf_metrics.observe_admissions(store, admitted, via="claim")  # a retried activity

    after = scrape(metrics.url)
    count = "quotaflow_admission_latency_seconds_count"
    total = "quotaflow_admission_latency_seconds_sum"
    assert after.value(count, **series) - before.value(count, **series) == 2
    assert after.value(total, **series) > before.value(total, **series)
    assert after.value("quotaflow_admission_latency_seconds_bucket", le="+Inf", **series) >= 2


def test_observers_read_nothing_while_metrics_are_off(store: Store) -> None:
    world = seed(store, gpus=8)
    world.submit(gpu=1, priority_class="high")
    admitted = store.queue.claim("main", 10).admitted
    series = {"pool": "main", "priority_class": "high", "via": "claim"}
    count = "quotaflow_admission_latency_seconds_count"
    before = REGISTRY.get_sample_value(count, series) or 0
    assert not qf_metrics.observing()
    qf_metrics.observe_admissions(store, admitted, via="claim")
    assert (REGISTRY.get_sample_value(count, series) or 0) == before


def test_a_database_that_does_not_answer_is_reported_not_fatal(db_dsn: str) -> None:
    database = Database(db_dsn, min_size=0, max_size=1)
    broken = Store(database, UTC)
    database.close()
    server = start_metrics_server(free_port(), broken, host="127.0.0.1")
    try:
        answer = scrape(server.url)
    finally:
        server.close()
    assert answer.value("quotaflow_database_up") == 0
    assert answer.has("quotaflow_evictions_total", outcome="evicted")  # the rest still serves


@pytest.fixture
def preemption(
    store: Store, emulator: EmulatorServer, temporal_env: WorkflowEnvironment
) -> Iterator[PreemptionActivities]:
    """The real activity class, with real dependencies (no worker needed to call it)."""
    settings = stack_settings(emulator.url)
    kube = KubeClient.from_settings(settings)
    executor = ThreadPoolExecutor(max_workers=4)
    deps = Deps(
        store=store, kube=kube, settings=settings, client=temporal_env.client, executor=executor
    )
    yield PreemptionActivities(deps)
    executor.shutdown(wait=False, cancel_futures=True)
    kube.close()


async def test_evictions_are_counted_by_outcome(
    preemption: PreemptionActivities, emulator: EmulatorServer, metrics: MetricsServer
) -> None:
    kube = preemption.kube
    pods = [kube.create_job_pod(pod_request(pool="main")) for _ in range(2)]
    for pod in pods:
        await asyncio.to_thread(wait_running, kube, pod.name)

    def evict(name: str) -> str:
        return preemption.evict_pod(EvictInput(job_id=uuid.uuid4(), pod_name=name))

    def failure(name: str) -> ApplicationError:
        with pytest.raises(ApplicationError) as caught:
            evict(name)
        return caught.value

    before = scrape(metrics.url)
    assert await asyncio.to_thread(evict, pods[0].name) == "evicted"
    assert await asyncio.to_thread(evict, "no-such-pod") == "already_gone"

    keep = V1PodDisruptionBudget.from_dict(
        budget("keep", {"app.kubernetes.io/managed-by": "quotaflow"}, minAvailable=1)
    )
    assert keep is not None
    policy = PolicyV1Api(kube.api_client)
    await asyncio.to_thread(policy.create_namespaced_pod_disruption_budget, "quotaflow", keep)
    assert (await asyncio.to_thread(failure, pods[1].name)).type == "EvictionBlocked"
    await asyncio.to_thread(policy.delete_namespaced_pod_disruption_budget, "keep", "quotaflow")

    emulator.inject_fault("pods.evict", status=403)
    assert (await asyncio.to_thread(failure, pods[1].name)).type == "KubeForbidden"
    emulator.inject_fault("pods.evict", status=500)
    assert not (await asyncio.to_thread(failure, pods[1].name)).non_retryable

    after = scrape(metrics.url)
    for outcome in ("evicted", "already_gone", "blocked", "forbidden", "failed"):
        moved = after.value("quotaflow_evictions_total", outcome=outcome) - before.value(
            "quotaflow_evictions_total", outcome=outcome
        )
        assert moved == 1, outcome


async def test_a_saga_with_nothing_to_reserve_counts_as_not_started(
    preemption: PreemptionActivities, store: Store, metrics: MetricsServer
) -> None:
    world = seed(store, gpus=8)
    job = world.submit(gpu=1, priority_class="high")  # fits the empty pool: no victims needed
    before = scrape(metrics.url)
    reserved = await asyncio.to_thread(preemption.reserve_victims, PreemptionInput(job_id=job.id))
    assert reserved.outcome == "fits"
    after = scrape(metrics.url)
    name = "quotaflow_preemption_sagas_total"
    assert after.value(name, outcome="not_started") - before.value(name, outcome="not_started") == 1
