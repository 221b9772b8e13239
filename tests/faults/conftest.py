"""Fixtures of the fault experiments: the scale, a seeded random source, a report, and the
experiment itself — worker processes on a Temporal dev server, a database, the emulator.

``QF_FAULTS_SCALE=small`` (the default, part of ``make test``) runs every experiment at a size
that keeps the whole folder within a few minutes; ``QF_FAULTS_SCALE=full`` (``make faults``) runs
the sizes docs/en/reliability.md reports. ``QF_FAULTS_SEED`` replays one run's random choices;
``QF_FAULTS_REPORT=<file>`` appends one JSON line per experiment (what was injected, what held).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain.models import GrantRole, Role, SetPool
from k8s.emulator import EmulatorAdmin, EmulatorServer
from settings import Settings
from store import Store
from store.db import Database
from tests.conftest import PgServer
from tests.factories import World, seed
from tests.faults.harness import (
    JobSpec,
    Sources,
    WorkerProcess,
    event_counts,
    experiment_settings,
    find_violations,
    patient,
    rows,
    saga_outcomes,
    start_all,
    submit_all,
    terminate_prefix,
    timeline,
    unfinished,
    wait_final,
    wait_for,
    worker_env,
)

SAGA_POOLS = ("saga-a", "saga-b")
SAGA_POOL_GPUS = 4
MAIN_POOL_GPUS = 8


@dataclass(frozen=True)
class Scale:
    """How much of each experiment to run."""

    name: str
    lifecycles: int  # jobs flowing while the worker is SIGKILLed
    kill_rounds: int  # one SIGKILL (and restart) per round; each round runs len(SAGA_POOLS) sagas
    pg_jobs: int
    pg_restarts: int
    temporal_jobs: int
    temporal_restarts: int
    kube_rounds: int  # repetitions of each Kubernetes fault scenario
    load_jobs: int
    # Per-test limit (pytest-timeout): a hung experiment fails instead of blocking the suite.
    timeout: int


SCALES = {
    "small": Scale(
        name="small",
        lifecycles=12,
        kill_rounds=1,
        pg_jobs=16,
        pg_restarts=1,
        temporal_jobs=10,
        temporal_restarts=1,
        kube_rounds=1,
        load_jobs=40,
        timeout=300,
    ),
    "full": Scale(
        name="full",
        lifecycles=200,
        kill_rounds=10,
        pg_jobs=150,
        pg_restarts=6,
        temporal_jobs=100,
        temporal_restarts=3,
        kube_rounds=3,
        load_jobs=300,
        timeout=3600,
    ),
}


def current_scale() -> Scale:
    name = os.environ.get("QF_FAULTS_SCALE", "small")
    if name not in SCALES:
        raise pytest.UsageError(f"QF_FAULTS_SCALE={name!r}: use one of {sorted(SCALES)}")
    return SCALES[name]


def scaled_timeout() -> pytest.MarkDecorator:
    """The per-test limit of a fault module (``pytestmark = scaled_timeout()``): the full sizes
    run far longer than the suite's default, and a hung experiment must still fail, not block."""
    return pytest.mark.timeout(current_scale().timeout)


@pytest.fixture(scope="session")
def scale() -> Scale:
    return current_scale()


class SeededRandom(random.Random):
    """A random source that remembers its seed, to print and report it."""

    def __init__(self, seed_value: int) -> None:
        super().__init__(seed_value)
        self.seed_value = seed_value


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> SeededRandom:
    """The experiment's random choices; the seed is printed (and reported) to replay them."""
    seed_text = os.environ.get("QF_FAULTS_SEED")
    seed_value = int(seed_text) if seed_text else random.SystemRandom().randrange(2**32)
    print(f"{request.node.name}: QF_FAULTS_SEED={seed_value}")
    return SeededRandom(seed_value)


@dataclass
class Report:
    """What an experiment injected and observed; one JSON line in ``QF_FAULTS_REPORT``."""

    test: str
    scale: str
    seed: int
    values: dict[str, Any] = field(default_factory=dict)

    def add(self, **values: Any) -> None:
        self.values.update(values)

    def append(self, key: str, value: Any) -> None:
        self.values.setdefault(key, []).append(value)


@pytest.fixture
def report(request: pytest.FixtureRequest, scale: Scale, rng: SeededRandom) -> Iterator[Report]:
    started = time.monotonic()
    found = Report(request.node.name, scale.name, rng.seed_value)
    yield found
    found.add(seconds=round(time.monotonic() - started, 1))
    line = json.dumps(
        {"test": found.test, "scale": found.scale, "seed": found.seed, **found.values},
        default=str,
    )
    print(line)
    target = os.environ.get("QF_FAULTS_REPORT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a") as out:
            out.write(line + "\n")


# --- the pieces --------------------------------------------------------------------------------


def temporal_address(client: Client) -> str:
    return client.service_client.config.target_host


@contextlib.contextmanager
def fresh_database(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """A migrated database of its own (for module-scoped experiments)."""
    name = f"qf_faults_{uuid.uuid4().hex[:12]}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield pg_server.dsn_for(name)
    finally:
        with pg_server.admin() as conn, contextlib.suppress(Exception):
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


# --- the experiment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SagaRound:
    victims: list[UUID]
    preemptors: list[UUID]


@dataclass
class Experiment:
    """A running quotaflow: worker processes, the database, Temporal, the emulator."""

    src: Sources
    store: Store
    world: World
    workers: list[WorkerProcess]
    logs: Path

    @property
    def client(self) -> Client:
        return self.src.client

    @property
    def settings(self) -> Settings:
        return self.src.settings

    @property
    def db(self) -> Database:
        return self.src.db

    @property
    def kube(self) -> EmulatorAdmin:
        assert self.src.kube_url is not None
        return EmulatorAdmin(self.src.kube_url)

    @property
    def worker(self) -> WorkerProcess:
        return self.workers[0]

    def spec(self, pool: str = "main", **values: Any) -> JobSpec:
        return JobSpec(project_id=self.world.team.p_id, pool=pool, **values)

    def random_lifecycle(self, rng: random.Random, pool: str = "main") -> JobSpec:
        """A short job of the main pool; low and normal mixed, so some preempt others."""
        return self.spec(
            pool=pool,
            gpu=rng.choice((1, 1, 2, 3)),
            priority_class=rng.choice(("normal", "normal", "low")),
            run_seconds=round(rng.uniform(0.3, 3.0), 2),
        )

    async def submit(self, specs: list[JobSpec], concurrency: int = 16) -> list[UUID]:
        return await submit_all(self.client, self.settings, specs, concurrency=concurrency)

    async def finish(self, job_ids: list[UUID], timeout: float) -> float:
        return await wait_final(self.db, job_ids, timeout=timeout, describe=self.diagnosis)

    def statuses(self, job_ids: list[UUID]) -> Counter[str]:
        return Counter(
            r["s"]
            for r in rows(
                self.db, "SELECT status::text AS s FROM jobs WHERE id = ANY(%s)", (job_ids,)
            )
        )

    async def wait_all(self, job_ids: list[UUID], status: str, timeout: float = 120) -> None:
        """Until every one of the jobs is in ``status`` (e.g. victims RUNNING)."""
        await wait_for(
            lambda: self.statuses(job_ids)[status] == len(job_ids),
            timeout=timeout,
            what=f"{len(job_ids)} job(s) to be {status}",
        )

    async def start_sagas(self, victim_run_seconds: float = 600.0) -> SagaRound:
        """Fill each saga pool with low-priority victims, then submit a high-priority job that
        needs all of the pool: one saga per pool is (about to be) under way on return."""
        victims = await self.submit(
            [
                self.spec(pool=pool, gpu=2, priority_class="low", run_seconds=victim_run_seconds)
                for pool in SAGA_POOLS
                for _ in range(SAGA_POOL_GPUS // 2)
            ]
        )
        await self.wait_all(victims, "RUNNING")
        preemptors = await self.submit(
            [
                self.spec(pool=pool, gpu=SAGA_POOL_GPUS, priority_class="high", run_seconds=0.5)
                for pool in SAGA_POOLS
            ]
        )
        return SagaRound(victims, preemptors)

    async def finish_sagas(self, round_: SagaRound, timeout: float = 300) -> list[UUID]:
        """Wait for the preemptors to end, then end the victims' long workloads."""
        await self.finish(round_.preemptors, timeout=timeout)
        await self.end_workloads(round_.victims, timeout=timeout)
        return [*round_.victims, *round_.preemptors]

    async def end_workloads(self, job_ids: list[UUID], timeout: float) -> None:
        """Make the jobs' workloads finish now (their pods end Succeeded), until each is final.

        Victims run long so that a saga always needs them; once the saga is over, the rest of
        their run (and the rerun after a requeue) proves nothing, so the test ends it.
        """
        deadline = time.monotonic() + timeout
        while left := await patient(lambda: unfinished(self.db, job_ids)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(left)} job(s) not final:\n{await self.diagnosis()}")
            running = await patient(
                lambda: rows(
                    self.db,
                    "SELECT pod_name FROM jobs WHERE id = ANY(%s) AND status = 'RUNNING' "
                    "AND pod_name IS NOT NULL",
                    ([r["id"] for r in left],),
                )
            )
            for row in running:
                # The pod may be gone or ending already: that is what we want anyway.
                with contextlib.suppress(RuntimeError):
                    await asyncio.to_thread(self.kube.end_pod, row["pod_name"], phase="Succeeded")
            await asyncio.sleep(0.5)

    async def check(self, job_ids: list[UUID], report: Report | None = None) -> None:
        """Every invariant, or one failure that lists each broken one with the context."""
        found = await find_violations(self.src, job_ids)
        if report is not None:
            report.add(
                jobs=len(job_ids),
                transitions=dict(event_counts(self.db, job_ids)),
                sagas=dict(saga_outcomes(self.db)),
                violations=found,
            )
        if found:
            listed = "\n".join(f"  - {v}" for v in found[:40])
            raise AssertionError(
                f"{len(found)} invariant(s) broken:\n{listed}\n{await self.diagnosis()}"
            )

    async def diagnosis(self) -> str:
        """What to read when an experiment fails: stuck jobs, sagas, the workers' last words."""
        lines = ["--- jobs not final / sagas ---"]
        with contextlib.suppress(Exception):
            for row in rows(
                self.db,
                "SELECT id, status::text AS s, attempt, pod_name, preempted_by, status_reason "
                "FROM jobs WHERE status NOT IN ('SUCCEEDED','FAILED','CANCELLED') LIMIT 30",
            ):
                lines.append(f"job {row}")
            for row in rows(
                self.db,
                "SELECT preemptor_id, status::text AS s, victims, reason FROM preemptions "
                "ORDER BY created_at DESC LIMIT 20",
            ):
                lines.append(f"saga {row}")
            events = timeline(
                self.db, [r["id"] for r in rows(self.db, "SELECT id FROM jobs")]
            ).splitlines()
            lines += ["--- the last transitions ---", *events[-40:]]
        for worker in self.workers:
            lines.append(f"--- {worker.log_file} ---\n{worker.tail(25)}")
        return "\n".join(lines)


def seed_world(store: Store) -> World:
    """org/team (alice a member, an always-on plan on org: every job is in quota), the pool
    ``main`` and the small saga pools."""
    world = seed(store, gpus=MAIN_POOL_GPUS)
    store.tenants.grant(
        GrantRole(principal_id=world.alice.id, project_id=world.root.p_id, role=Role.MEMBER)
    )
    for pool in SAGA_POOLS:
        store.catalog.set_pool(SetPool(name=pool, gpu_capacity=SAGA_POOL_GPUS, cpu_capacity=64))
    world.plan(world.root, 10_000)
    return world


@contextlib.asynccontextmanager
async def experiment(
    *,
    dsn: str,
    client: Client,
    kube_url: str,
    logs: Path,
    workers: int = 1,
    **overrides: Any,
) -> AsyncIterator[Experiment]:
    """Seed the database, start ``workers`` worker processes, and clean everything up after."""
    settings = experiment_settings(kube_url, **overrides)
    store = Store(Database(dsn, min_size=1, max_size=8), UTC)
    world = seed_world(store)
    env = worker_env(
        settings, dsn=dsn, temporal_address=temporal_address(client), state_dir=logs / "state"
    )
    processes = [WorkerProcess(f"worker{i}", env, logs) for i in range(workers)]
    src = Sources(store.db, client, settings, kube_url)
    try:
        await start_all(processes)
        yield Experiment(src, store, world, processes, logs)
    finally:
        for process in processes:
            process.stop()
        await terminate_prefix(client, settings.workflow_id_prefix)
        store.close()


@pytest.fixture
async def lab(
    temporal_env: WorkflowEnvironment,
    db_dsn: str,
    emulator: EmulatorServer,
    tmp_path: Path,
) -> AsyncIterator[Experiment]:
    """One worker process on the session's dev server, a fresh database, the emulator."""
    async with experiment(
        dsn=db_dsn, client=temporal_env.client, kube_url=emulator.url, logs=tmp_path
    ) as running:
        yield running
