"""A worker killed with SIGKILL in the middle of a saga, then restarted: it finishes, with no
double eviction and no lost job."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from kubernetes.client import PolicyV1Api, V1LabelSelector, V1ObjectMeta, V1PodDisruptionBudget
from kubernetes.client import V1PodDisruptionBudgetSpec as PdbSpec
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from domain.models import GrantRole, Role
from k8s.client import KubeClient
from k8s.emulator import EmulatorServer
from settings import Settings
from store import Store
from tests.db.helpers import assert_counters_consistent, scalar
from tests.factories import seed
from tests.faults.harness import WorkerProcess, worker_env
from tests.stack import Stack, stack_settings
from workflows.shared import dispatcher_workflow_id, job_workflow_id, pod_watcher_workflow_id


@pytest.fixture
def crash_stack(
    temporal_env: WorkflowEnvironment,
    store: Store,
    db_dsn: str,
    emulator: EmulatorServer,
    tmp_path: Path,
) -> Iterator[tuple[Stack, WorkerProcess]]:
    settings: Settings = stack_settings(emulator.url)
    world = seed(store, gpus=8)
    store.tenants.grant(
        GrantRole(principal_id=world.alice.id, project_id=world.root.p_id, role=Role.MEMBER)
    )
    env = worker_env(
        settings,
        dsn=db_dsn,
        temporal_address=temporal_env.client.service_client.config.target_host,
        state_dir=tmp_path / "state",
    )
    worker = WorkerProcess("worker", env, tmp_path)
    worker.start()
    kube = KubeClient.from_settings(settings)
    stack = Stack(temporal_env.client, settings, store, kube, emulator, world)
    yield stack, worker
    worker.stop()
    kube.close()


async def dump(stack: Stack, job_ids: list[UUID]) -> None:
    """What the database and the workflows say, to read when this test fails."""
    with stack.store.db.connection() as conn:
        for row in conn.execute("SELECT id, status, attempt, pod_name, status_reason FROM jobs"):
            print("job", dict(row))
        for row in conn.execute("SELECT preemptor_id, status, reason FROM preemptions"):
            print("saga", dict(row))
    for job_id in job_ids:
        history = await stack.client.get_workflow_handle(
            job_workflow_id(job_id, stack.settings.workflow_id_prefix)
        ).fetch_history()
        for event in history.events:
            print(job_id, event.event_time.ToDatetime().time(), EventType.Name(event.event_type))


async def test_sigkill_mid_saga_then_restart_finishes_cleanly(
    crash_stack: tuple[Stack, WorkerProcess],
) -> None:
    stack, worker = crash_stack
    stack.world.plan(stack.world.team, 100)
    lows = [await stack.submit(gpu=4, priority_class="low", run_seconds=20) for _ in range(2)]
    for job in lows:
        await stack.wait_status(job.job_id, "RUNNING", timeout=60)
    # A budget holds the evictions (429s) so the saga is surely mid-eviction when we kill.
    policy = PolicyV1Api(stack.kube.api_client)
    pdb = V1PodDisruptionBudget(
        metadata=V1ObjectMeta(name="hold"),
        spec=PdbSpec(
            min_available=2,
            selector=V1LabelSelector(match_labels={"app.kubernetes.io/managed-by": "quotaflow"}),
        ),
    )
    await asyncio.to_thread(policy.create_namespaced_pod_disruption_budget, "quotaflow", pdb)
    high = await stack.submit(gpu=8, priority_class="high", run_seconds=0.5)
    for job in lows:
        await stack.wait_status(job.job_id, "PREEMPTING", timeout=60)
    worker.kill()
    await asyncio.to_thread(policy.delete_namespaced_pod_disruption_budget, "hold", "quotaflow")
    worker.start()
    try:
        assert (await stack.result(high.job_id, timeout=120)).status == "SUCCEEDED"
        for job in lows:
            assert (await stack.result(job.job_id, timeout=120)).status == "SUCCEEDED"
    except BaseException:
        await dump(stack, [high.job_id, *(j.job_id for j in lows)])
        raise
        events = stack.store.queue.events(job.job_id)
        assert sum(1 for e in events if e.to_status == "PREEMPTED") == 1  # evicted once
        assert sum(1 for e in events if e.to_status == "SUCCEEDED") == 1
    with stack.store.db.connection() as conn:
        assert (
            scalar(
                conn,
                "SELECT count(*) FROM jobs WHERE status NOT IN ('SUCCEEDED','FAILED','CANCELLED')",
            )
            == 0
        )
    assert_counters_consistent(stack.store.db)
    for workflow_id in (
        pod_watcher_workflow_id(stack.settings.workflow_id_prefix),
        dispatcher_workflow_id("main", stack.settings.workflow_id_prefix),
    ):
        await stack.client.get_workflow_handle(workflow_id).terminate("test over")
