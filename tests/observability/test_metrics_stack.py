"""The series moved by a real worker: Temporal, PostgreSQL and the Kubernetes emulator."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error

from temporalio.testing import WorkflowEnvironment

from k8s.emulator import EmulatorServer
from observability.server import MetricsServer
from settings import Settings
from tests.observability.conftest import Scrape, free_port_pair, scrape
from tests.stack import Stack, stack_settings
from worker import run_worker
from workflows.client import cancel_job
from workflows.shared import CancelRequest, pod_watcher_workflow_id


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


async def test_a_preemption_story_moves_every_series(stack: Stack, metrics: MetricsServer) -> None:
    before = await asyncio.to_thread(scrape, metrics.url)
    stack.world.plan(stack.world.team, 100)
    lows = [await stack.submit(gpu=4, priority_class="low", run_seconds=60) for _ in range(2)]
    for low in lows:
        await stack.wait_status(low.job_id, "RUNNING")

    # The first saga meets a 403 and is compensated; once the fault is gone, a later one
    # completes and admits the high-priority job.
    stack.emulator.inject_fault("pods.evict", status=403, times=100)
    high = await stack.submit(gpu=4, priority_class="high", run_seconds=0.3)
    assert (await stack.saga(high.job_id, timeout=120)).outcome == "compensated"
    stack.emulator.clear_faults()
    assert (await stack.result(high.job_id, timeout=120)).status == "SUCCEEDED"

    for low in lows:
        request = CancelRequest(actor="alice", reason="test over")
        await cancel_job(stack.client, stack.settings, low.job_id, request)
        await stack.result(low.job_id, timeout=60)

    after = await asyncio.to_thread(scrape, metrics.url)
    latency = "quotaflow_admission_latency_seconds_count"
    assert moved(before, after, latency, pool="main", priority_class="low", via="claim") >= 2
    assert moved(before, after, latency, priority_class="high", via="preemption") == 1
    evictions = "quotaflow_evictions_total"
    assert moved(before, after, evictions, outcome="forbidden") >= 1
    assert moved(before, after, evictions, outcome="evicted") >= 1
    sagas = "quotaflow_preemption_sagas_total"
    assert moved(before, after, sagas, outcome="compensated") >= 1
    assert moved(before, after, sagas, outcome="completed") == 1
    duration = "quotaflow_preemption_saga_duration_seconds_count"
    assert moved(before, after, duration, outcome="completed") == 1
    assert moved(before, after, duration, outcome="compensated") >= 1
    endings = "quotaflow_job_endings_total"
    assert moved(before, after, endings, pool="main", status="SUCCEEDED") == 1
    assert moved(before, after, endings, pool="main", status="CANCELLED") == 2
    assert after.value("quotaflow_preemptions_active", pool="main") == 0


async def scrape_when_up(url: str, timeout: float = 60) -> Scrape:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await asyncio.to_thread(scrape, url)
        except (urllib.error.URLError, ConnectionError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_the_worker_serves_its_metrics_and_the_temporal_sdks(
    temporal_env: WorkflowEnvironment, db_dsn: str, emulator: EmulatorServer
) -> None:
    port = free_port_pair()
    settings: Settings = stack_settings(
        emulator.url,
        metrics_port=port,
        database_url=db_dsn,
        temporal_address=temporal_env.client.service_client.config.target_host,
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        ours = await scrape_when_up(f"http://127.0.0.1:{port}/metrics")
        assert ours.value("quotaflow_database_up") == 1
        assert ours.has("quotaflow_evictions_total", outcome="blocked")
        assert ours.has("process_cpu_seconds_total")
        temporal = await scrape_when_up(f"http://127.0.0.1:{port + 1}/metrics")
        # this worker's pollers report through the runtime that serves these
        mine = [s for s in temporal.samples if s.labels.get("task_queue") == settings.task_queue]
        assert mine and all(s.name.startswith("temporal_") for s in mine)
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=60)
        handle = temporal_env.client.get_workflow_handle(
            pod_watcher_workflow_id(settings.workflow_id_prefix)
        )
        with contextlib.suppress(Exception):  # already gone is fine
            await handle.terminate("test over")
