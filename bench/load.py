"""Load: many jobs through the whole stack, with the invariants of the fault tests checked after.

python -m bench.load                      # 10,000 jobs, 50 projects, 3 pools, 4 workers
python -m bench.load --quick              # 500 jobs
python -m bench.load --jobs 2000 --workers 2 --out results.md

A run gets a stack of its own, torn down at the end: a durable embedded PostgreSQL and a
headless Temporal dev server (its SQLite file on tmpfs when there is one) in a temporary folder
on free ports, the Kubernetes API emulator (``python -m k8s.emulator``; pods start after 50 ms
and run for the job's ``run_seconds``), and W ``python worker.py`` processes on one task queue.
The driver keeps a fixed number of jobs in flight (submitted, not yet final): a closed loop, so
the stack runs at its own pace and the queue never grows without bound.

Reported: admission latency (submit → ADMITTED of the first attempt, from ``job_events``) by
priority class, time to the end of each job, throughput, preemptions (sagas completed and
compensated, evictions), peak pool usage against capacity — and every invariant of
docs/en/reliability.md, as a list of violations (empty when they all held).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.common import fmt, markdown_table, percentile
from bench.orchestration_stack import start_emulator, start_temporal, stop_postgres
from devstack.postgres import EmbeddedPostgres, free_port
from domain.models import (
    AddPlan,
    CreateProject,
    CreateUser,
    GrantRole,
    ResourceType,
    Role,
    SetPool,
)
from settings import Settings
from store import Store
from store.db import Database
from store.migrate import migrate
from tests.db.helpers import replay_pool_usage
from tests.faults.harness import (
    JobSpec,
    Sources,
    WorkerProcess,
    experiment_settings,
    find_violations,
    rows,
    start_all,
    submit,
    terminate_prefix,
    wait_final,
    worker_env,
)
from workflows.shared import FINAL_STATUSES

ACTOR = "alice"


@dataclass(frozen=True)
class PoolShape:
    name: str
    gpu: int
    cpu: int
    share: float  # of the jobs submitted to it


@dataclass(frozen=True)
class LoadShape:
    """What a run submits and with how many workers."""

    jobs: int = 10_000
    projects: int = 50
    teams: int = 5  # projects are spread over teams; all but the last team have plans
    pools: tuple[PoolShape, ...] = (
        PoolShape("a100", gpu=48, cpu=384, share=0.45),
        PoolShape("h100", gpu=24, cpu=192, share=0.25),
        PoolShape("cpu", gpu=0, cpu=256, share=0.30),
    )
    workers: int = 4
    in_flight: int = 120
    run_seconds: tuple[float, float] = (0.2, 2.0)
    # share of jobs per priority class; "high" preempts "normal" and "low", "normal" preempts "low"
    classes: tuple[tuple[str, float], ...] = (("low", 0.25), ("normal", 0.60), ("high", 0.15))
    seed: int = 20261129
    timeout_seconds: float = 4 * 3600
    # No job finishing for this long is a stall: stop and show the workers' logs.
    stall_seconds: float = 300.0


QUICK = LoadShape(jobs=500)


@dataclass(frozen=True)
class LoadWorld:
    projects: list[UUID]
    best_effort_projects: list[UUID]


@dataclass
class Cluster:
    """The running pieces of a load run, as the driver sees them."""

    src: Sources
    store: Store
    workers: list[WorkerProcess]
    logs: Path


# --- the stack -----------------------------------------------------------------------------


def load_settings(kube_url: str) -> Settings:
    """The workers' settings: the fault experiments' ones, with production-like timers.

    The job poll is a fallback for lost signals; at 5 s (the experiments') 10,000 idle polls
    would add load that no real deployment has.
    """
    return experiment_settings(
        kube_url,
        task_queue=f"load-{uuid.uuid4().hex[:8]}",
        workflow_id_prefix=f"l{uuid.uuid4().hex[:8]}-",
        dispatcher_idle_seconds=2.0,
        reconcile_after_seconds=10.0,
        job_poll_seconds=60.0,
        eviction_deadline_seconds=120.0,
        preemption_retry_seconds=2.0,
    )


@contextlib.contextmanager
def servers(state: Path, *, keep: bool) -> Iterator[tuple[str, str, str]]:
    """PostgreSQL, the Temporal dev server and the emulator; yields their DSN and addresses."""
    with contextlib.ExitStack() as cleanup:
        postgres = EmbeddedPostgres(state, port=free_port(), durable=True, max_connections=200)
        cleanup.callback(stop_postgres, postgres)
        dsn = postgres.acquire()
        with Database(dsn, max_size=1) as db, db.connection() as conn:
            migrate(conn)
        _, address = start_temporal(cleanup, state, tmpfs=True, keep=keep)
        _, kube_url = start_emulator(cleanup, state / "logs" / "emulator.log", start_delay=0.05)
        yield dsn, address, kube_url


@contextlib.asynccontextmanager
async def load_cluster(shape: LoadShape, *, keep: bool = False) -> AsyncIterator[Cluster]:
    """The stack and the (not yet started) workers of one run; everything stopped at the end."""
    state = Path(tempfile.mkdtemp(prefix="quotaflow-load-", dir="/tmp"))
    logs = state / "logs"
    logs.mkdir()
    with contextlib.ExitStack() as cleanup:
        if not keep:
            cleanup.callback(shutil.rmtree, state, ignore_errors=True)
        dsn, address, kube_url = cleanup.enter_context(servers(state, keep=keep))
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        settings = load_settings(kube_url)
        store = Store(Database(dsn, min_size=1, max_size=8), ZoneInfo("UTC"))
        cleanup.callback(store.close)
        env = worker_env(settings, dsn=dsn, temporal_address=address, state_dir=state / "w")
        workers = [WorkerProcess(f"worker{i}", env, logs) for i in range(shape.workers)]
        # Registered after the servers: the ExitStack unwinds in reverse, workers stop first.
        for worker in workers:
            cleanup.callback(worker.stop)
        cluster = Cluster(Sources(store.db, client, settings, kube_url), store, workers, logs)
        try:
            yield cluster
        finally:
            await terminate_prefix(client, settings.workflow_id_prefix)


# --- the world and the jobs ------------------------------------------------------------------


def seed_world(store: Store, shape: LoadShape) -> LoadWorld:
    """org → teams → projects; alice a member of org; a GPU and a CPU plan on every team but
    the last, each a share of the cluster that together oversubscribe it (so quotas bind, and
    in-quota jobs blocked by a full pool preempt); the last team's projects run best effort."""
    admin = store.tenants.create_user(CreateUser(username="root", platform_admin=True))
    alice = store.tenants.create_user(CreateUser(username=ACTOR))
    org = store.projects.create(CreateProject(name="org", owner_id=admin.id))
    store.tenants.grant(GrantRole(principal_id=alice.id, project_id=org.p_id, role=Role.MEMBER))
    for pool in shape.pools:
        store.catalog.set_pool(
            SetPool(name=pool.name, gpu_capacity=pool.gpu, cpu_capacity=pool.cpu)
        )
    total_gpu = sum(p.gpu for p in shape.pools)
    total_cpu = sum(p.cpu for p in shape.pools)
    planned = max(1, shape.teams - 1)
    teams = []
    for number in range(shape.teams):
        team = store.projects.create(
            CreateProject(name=f"team-{number}", owner_id=admin.id, parent_id=org.p_id)
        )
        teams.append(team)
        if number == shape.teams - 1 and shape.teams > 1:
            continue
        for resource, total in ((ResourceType.GPU, total_gpu), (ResourceType.CPU, total_cpu)):
            store.plans.add(
                AddPlan(
                    project_id=team.p_id,
                    resource_owner_id=admin.id,
                    resource_type=resource,
                    quantity=max(1, round(total * 1.6 / planned)),
                    window="always",
                )
            )
    projects: list[UUID] = []
    best_effort: list[UUID] = []
    for number in range(shape.projects):
        team = teams[number % len(teams)]
        project = store.projects.create(
            CreateProject(name=f"project-{number}", owner_id=admin.id, parent_id=team.p_id)
        )
        projects.append(project.p_id)
        if team is teams[-1] and shape.teams > 1:
            best_effort.append(project.p_id)
    return LoadWorld(projects, best_effort)


def job_mix(shape: LoadShape, world: LoadWorld, rng: random.Random) -> list[JobSpec]:
    pools = list(shape.pools)
    classes = [name for name, _ in shape.classes]
    specs = []
    for _ in range(shape.jobs):
        pool = rng.choices(pools, weights=[p.share for p in pools])[0]
        gpu = rng.choice((1, 1, 1, 2, 2, 4)) if pool.gpu else 0
        cpu = rng.randint(1, 4) if pool.gpu else rng.randint(1, 8)
        specs.append(
            JobSpec(
                project_id=rng.choice(world.projects),
                pool=pool.name,
                gpu=min(gpu, pool.gpu),
                cpu=min(cpu, pool.cpu),
                priority_class=rng.choices(classes, weights=[w for _, w in shape.classes])[0],
                run_seconds=round(rng.uniform(*shape.run_seconds), 2),
            )
        )
    return specs


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Progress:
    at: float
    submitted: int
    final: int
    active: int


@dataclass
class LoadResult:
    shape: LoadShape
    job_ids: list[UUID]
    seconds: float
    submit_seconds: float
    # seconds from submit to the first admission, per priority class (and "all")
    admission: dict[str, list[float]]
    completion: list[float]
    outcomes: dict[str, int]
    sagas: dict[str, int]
    evictions: int
    preempted_jobs: int
    peak_gpu: dict[str, int]
    capacity: dict[str, int]
    violations: list[str]
    progress: list[Progress] = field(default_factory=list)
    load_average: tuple[float, float] = (0.0, 0.0)

    @property
    def throughput(self) -> float:
        return len(self.job_ids) / self.seconds if self.seconds else 0.0


def final_count(db: Database) -> int:
    return int(
        rows(
            db,
            "SELECT count(*) AS n FROM jobs WHERE status::text = ANY(%s)",
            (list(FINAL_STATUSES),),
        )[0]["n"]
    )


class Stalled(RuntimeError):
    """No job finished for ``LoadShape.stall_seconds``."""


def stalled(cluster: Cluster, seconds: float) -> Stalled:
    tails = "\n".join(f"--- {w.log_file} ---\n{w.tail(15)}" for w in cluster.workers)
    return Stalled(f"no job finished for {seconds:.0f}s\n{tails}")


async def drive(cluster: Cluster, specs: Sequence[JobSpec], shape: LoadShape) -> list[Progress]:
    """Submit every job, keeping at most ``shape.in_flight`` of them unfinished at any moment."""
    src = cluster.src
    samples: list[Progress] = []
    started = time.monotonic()
    tasks: set[asyncio.Task[UUID]] = set()
    gate = asyncio.Semaphore(32)
    final = 0
    last_sample = 0.0
    last_change = time.monotonic()

    async def one(spec: JobSpec) -> UUID:
        async with gate:
            return await submit(src.client, src.settings, spec, actor=ACTOR)

    for submitted, spec in enumerate(specs):
        while submitted - final >= shape.in_flight:
            await asyncio.sleep(0.2)
            now_final = await asyncio.to_thread(final_count, src.db)
            if now_final != final:
                final, last_change = now_final, time.monotonic()
            elif time.monotonic() - last_change > shape.stall_seconds:
                raise stalled(cluster, shape.stall_seconds)
        now = time.monotonic() - started
        if now - last_sample >= 10:
            last_sample = now
            samples.append(Progress(now, submitted, final, submitted - final))
            print(f"  {now:7.0f}s  submitted {submitted:6d}  final {final:6d}", flush=True)
        task = asyncio.create_task(one(spec))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return samples


def latencies(db: Database, job_ids: list[UUID]) -> tuple[dict[str, list[float]], list[float]]:
    found = rows(
        db,
        """
        SELECT j.priority_class,
               extract(epoch FROM (SELECT min(a.at) FROM job_events a
                                   WHERE a.job_id = j.id AND a.attempt = 0
                                     AND a.from_status = 'PENDING' AND a.to_status = 'ADMITTED')
                                  - s.at) AS admit_s,
               extract(epoch FROM j.finished_at - s.at) AS total_s
        FROM jobs j JOIN job_events s ON s.job_id = j.id AND s.from_status IS NULL
        WHERE j.id = ANY(%s)
        """,
        (job_ids,),
    )
    admission: dict[str, list[float]] = {"all": []}
    completion: list[float] = []
    for row in found:
        if row["admit_s"] is not None:
            admission["all"].append(float(row["admit_s"]))
            admission.setdefault(row["priority_class"], []).append(float(row["admit_s"]))
        if row["total_s"] is not None:
            completion.append(float(row["total_s"]))
    return admission, completion


async def run(cluster: Cluster, shape: LoadShape) -> LoadResult:
    """Seed, start the workers, drive the load, wait for the end, measure, check."""
    rng = random.Random(shape.seed)
    world = await asyncio.to_thread(seed_world, cluster.store, shape)
    specs = job_mix(shape, world, rng)
    await start_all(cluster.workers)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    progress = await drive(cluster, specs, shape)
    submit_seconds = time.monotonic() - started
    job_ids = [s.job_id for s in specs]
    await wait_final(cluster.src.db, job_ids, timeout=shape.timeout_seconds)
    db = cluster.src.db
    ended = rows(
        db,
        "SELECT extract(epoch FROM max(finished_at) - min(created_at)) AS s FROM jobs",
    )[0]["s"]
    load_after = os.getloadavg()[0]
    admission, completion = latencies(db, job_ids)
    outcomes = {
        r["s"]: r["n"]
        for r in rows(db, "SELECT status::text AS s, count(*) AS n FROM jobs GROUP BY 1")
    }
    sagas = {
        r["s"]: r["n"]
        for r in rows(db, "SELECT status::text AS s, count(*) AS n FROM preemptions GROUP BY 1")
    }
    evictions = rows(
        db,
        "SELECT count(*) AS n, count(DISTINCT job_id) AS jobs FROM job_events "
        "WHERE to_status = 'PREEMPTED'",
    )[0]
    capacity = {r["name"]: r["gpu_capacity"] for r in rows(db, "SELECT * FROM pools")}
    violations = await find_violations(cluster.src, job_ids)
    return LoadResult(
        shape=shape,
        job_ids=job_ids,
        seconds=float(ended),
        submit_seconds=submit_seconds,
        admission=admission,
        completion=completion,
        outcomes=outcomes,
        sagas=sagas,
        evictions=int(evictions["n"]),
        preempted_jobs=int(evictions["jobs"]),
        peak_gpu=replay_pool_usage(db),
        capacity=capacity,
        violations=violations,
        progress=progress,
        load_average=(load_before, load_after),
    )


# --- output ----------------------------------------------------------------------------------


def render(result: LoadResult) -> str:
    shape = result.shape
    ms = 1000.0
    lines = [
        f"## Load: {len(result.job_ids):,} jobs, {shape.projects} projects, "
        f"{len(shape.pools)} pools, {shape.workers} workers",
        "",
        f"{os.cpu_count()} cores; load average {result.load_average[0]:.1f} at the start, "
        f"{result.load_average[1]:.1f} at the end; {shape.in_flight} jobs in flight; "
        f"run {shape.run_seconds[0]}–{shape.run_seconds[1]} s; seed {shape.seed}.",
        "",
        f"- wall clock, first submit → last job final: {result.seconds:,.0f} s "
        f"(submitting took {result.submit_seconds:,.0f} s)",
        f"- throughput: **{result.throughput:.1f} jobs/s**",
        f"- outcomes: {', '.join(f'{k} {v:,}' for k, v in sorted(result.outcomes.items()))}",
        f"- preemption sagas: {', '.join(f'{k} {v}' for k, v in sorted(result.sagas.items()))}"
        f" — {result.evictions:,} evictions of {result.preempted_jobs:,} distinct jobs",
        "- peak GPUs in use (replayed from job_events) / capacity: "
        + ", ".join(
            f"{pool} {result.peak_gpu.get(pool, 0)}/{cap}"
            for pool, cap in sorted(result.capacity.items())
            if cap  # a CPU-only pool has no GPUs to count
        ),
        "",
    ]
    headers = ["", "jobs", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    table = []
    for name in ["all", *(c for c, _ in shape.classes)]:
        values = result.admission.get(name, [])
        table.append(
            [
                f"admission, {name}",
                f"{len(values):,}",
                *(fmt(percentile(values, p) * ms, 0) for p in (50, 90, 99, 100)),
            ]
        )
    table.append(
        [
            "submit → final",
            f"{len(result.completion):,}",
            *(fmt(percentile(result.completion, p) * ms, 0) for p in (50, 90, 99, 100)),
        ]
    )
    lines.append(markdown_table(headers, table))
    lines.append("")
    if result.violations:
        lines.append(f"**{len(result.violations)} invariant(s) broken:**")
        lines += [f"- {v}" for v in result.violations[:50]]
    else:
        lines.append(
            "Invariants: all held (every job final and its workflow completed, no double "
            "admission, no double eviction, nothing PREEMPTING, every saga closed, pool "
            "capacity never exceeded, counters consistent, no pod left running)."
        )
    return "\n".join(lines) + "\n"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.jobs} jobs")
    parser.add_argument("--jobs", type=int, help="how many jobs (overrides --quick)")
    parser.add_argument("--workers", type=int, help="worker processes")
    parser.add_argument("--in-flight", type=int, help="jobs submitted but not yet final")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument("--keep", action="store_true", help="keep the state folder and logs")
    args = parser.parse_args(argv)
    shape = QUICK if args.quick else LoadShape()
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("jobs", args.jobs),
            ("workers", args.workers),
            ("in_flight", args.in_flight),
            ("seed", args.seed),
        )
        if value is not None
    }
    shape = replace(shape, **changes)

    async def go() -> LoadResult:
        async with load_cluster(shape, keep=args.keep) as cluster:
            if args.keep:
                print(f"state and logs: {cluster.logs.parent}", flush=True)
            return await run(cluster, shape)

    # SIGTERM unwinds like Ctrl-C: the finally blocks stop every process of the stack.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = asyncio.run(go())
    except Stalled as err:
        print(err, file=sys.stderr)
        return 2
    text = render(result)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
