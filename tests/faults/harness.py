"""The machinery of the fault experiments (and of ``bench/load.py``): worker processes that can
be SIGKILLed and restarted, job submission that survives the faults, and the invariants checked
from PostgreSQL, Temporal and the Kubernetes emulator once the dust settles.

The invariants (docs/en/reliability.md) are returned as a list of plain sentences rather than
asserted one by one, so a failing experiment reports every broken promise at once, and the load
benchmark can print them instead of dying on the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import DatabaseUnavailable
from k8s.emulator import EmulatorAdmin
from k8s.pods import LABEL_ATTEMPT, LABEL_JOB_ID
from settings import Settings
from store.db import Database
from tests.db.helpers import assert_counters_consistent, replay_pool_usage
from workflows.client import submit_job
from workflows.shared import (
    FINAL_STATUSES,
    JobRequest,
    JobView,
    job_workflow_id,
    preemption_workflow_id,
)

ROOT = Path(__file__).resolve().parents[2]
READY_MARK = "worker ready on task queue"
# How long a workflow whose job is final in the database may take to close its run.
SETTLE_SECONDS = 30.0
T = TypeVar("T")

# The settings a worker process gets from the experiment (each becomes a QF_ variable).
WORKER_KNOBS = (
    "task_queue",
    "workflow_id_prefix",
    "kube_mode",
    "kube_url",
    "kube_namespace",
    "kube_request_timeout_seconds",
    "dispatcher_idle_seconds",
    "reconcile_after_seconds",
    "job_poll_seconds",
    "eviction_deadline_seconds",
    "eviction_grace_seconds",
    "preemption_retry_seconds",
    "claim_batch_size",
    "requeue_backoff_after",
    "requeue_backoff_base_seconds",
    "requeue_backoff_max_seconds",
    "pg_pool_max",
)


def experiment_settings(kube_url: str, **overrides: Any) -> Settings:
    """Settings for a fault experiment: its own task queue and id prefix, short timers.

    The requeue backoff is cut to a second: it is a fairness policy (a job preempted twice waits
    before it returns), not something under test, and at its default of 30 s it would only make
    the experiments slower.
    """
    values: dict[str, Any] = {
        "task_queue": f"faults-{uuid.uuid4().hex[:10]}",
        "workflow_id_prefix": f"f{uuid.uuid4().hex[:8]}-",
        "kube_mode": "emulator",
        "kube_url": kube_url,
        "kube_namespace": "quotaflow",
        "kube_request_timeout_seconds": 5.0,
        "dispatcher_idle_seconds": 1.0,
        "reconcile_after_seconds": 3.0,
        "job_poll_seconds": 5.0,
        "eviction_deadline_seconds": 60.0,
        "eviction_grace_seconds": 0,
        "preemption_retry_seconds": 1.0,
        "claim_batch_size": 50,
        "requeue_backoff_base_seconds": 1.0,
        "requeue_backoff_max_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


def worker_env(
    settings: Settings, *, dsn: str, temporal_address: str, state_dir: Path
) -> dict[str, str]:
    """The environment of ``python worker.py`` for this experiment (no QF_ variable leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QF_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["QF_DATABASE_URL"] = dsn
    env["QF_TEMPORAL_ADDRESS"] = temporal_address
    env["QF_STATE_DIR"] = str(state_dir)
    for key, value in settings.model_dump(include=set(WORKER_KNOBS)).items():
        if value is not None:
            env[f"QF_{key.upper()}"] = str(value)
    return env


class WorkerProcess:
    """``python worker.py`` in a process of its own; each run writes its own log file."""

    def __init__(self, name: str, env: Mapping[str, str], logs: Path) -> None:
        self.name = name
        self.env = dict(env)
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.kills = 0

    @property
    def log_file(self) -> Path:
        return self.logs / f"{self.name}-{self.runs}.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self.runs += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "wb") as log:
            # A session of its own: a Ctrl-C in the terminal reaches pytest, which stops it.
            self.proc = subprocess.Popen(
                [sys.executable, "worker.py"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the worker polls its task queue (and has started its singletons)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_MARK in self.log_file.read_text(errors="replace"):
                return
            if not self.alive:
                raise RuntimeError(f"{self.name} exited before it was ready:\n{self.tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s:\n{self.tail()}")

    async def start_ready(self, timeout: float = 120.0) -> None:
        self.start()
        await asyncio.to_thread(self.wait_ready, timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, in-flight activities are simply lost."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self, timeout: float = 20.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# --- submitting jobs --------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    """One job an experiment submits."""

    project_id: UUID
    pool: str
    gpu: int = 1
    cpu: int = 0
    priority_class: str = "normal"
    run_seconds: float = 0.5
    name: str = ""
    job_id: UUID = field(default_factory=uuid.uuid4)

    def request(self, actor: str) -> JobRequest:
        return JobRequest(
            job_id=self.job_id,
            project_id=self.project_id,
            actor=actor,
            gpu=self.gpu,
            cpu=self.cpu,
            pool=self.pool,
            priority_class=self.priority_class,
            run_seconds=self.run_seconds,
            name=self.name,
        )


async def submit(
    client: Client, settings: Settings, spec: JobSpec, *, actor: str = "alice", timeout: float = 300
) -> UUID:
    """Submit through the workflow (update-with-start), retrying through faults.

    A resubmission of the same ``job_id`` lands on the same workflow and the same row (the
    submission is idempotent by contract), so retrying after a lost answer is safe — and doing
    it under faults tests that promise too.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            view = await asyncio.wait_for(
                submit_job(client, settings, spec.request(actor)), timeout=60
            )
            return view.job_id
        except (RPCError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def submit_all(
    client: Client,
    settings: Settings,
    specs: Sequence[JobSpec],
    *,
    concurrency: int = 16,
    actor: str = "alice",
) -> list[UUID]:
    gate = asyncio.Semaphore(concurrency)

    async def one(spec: JobSpec) -> UUID:
        async with gate:
            return await submit(client, settings, spec, actor=actor)

    return list(await asyncio.gather(*(one(s) for s in specs)))


# --- reading the database through restarts -----------------------------------------------------


def rows(db: Database, statement: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return list(conn.execute(statement, params).fetchall())


async def patient(call: Callable[[], T], timeout: float = 120.0) -> T:
    """``call()`` in a thread, retried while the database is down (it may be restarting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncio.to_thread(call)
        except DatabaseUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def unfinished(db: Database, job_ids: Sequence[UUID]) -> list[dict[str, Any]]:
    return rows(
        db,
        "SELECT id, status::text AS status, attempt, status_reason FROM jobs "
        "WHERE id = ANY(%s) AND status::text <> ALL(%s) ORDER BY created_at",
        (list(job_ids), list(FINAL_STATUSES)),
    )


async def wait_final(
    db: Database,
    job_ids: Sequence[UUID],
    *,
    timeout: float,
    describe: Callable[[], Awaitable[str]] | None = None,
) -> float:
    """Poll until every job is final; returns the seconds waited. Fails with a diagnosis."""
    started = time.monotonic()
    while True:
        left = await patient(lambda: unfinished(db, job_ids))
        if not left:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            detail = "\n".join(
                f"  {r['id']} {r['status']} attempt {r['attempt']}: {r['status_reason']}"
                for r in left[:20]
            )
            extra = await describe() if describe is not None else ""
            raise AssertionError(
                f"{len(left)} of {len(job_ids)} job(s) not final after {timeout:.0f}s:\n"
                f"{detail}\n{extra}"
            )
        await asyncio.sleep(0.5)


async def wait_for(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll a (blocking) predicate in a thread until it holds, or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while not await patient(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


# --- Temporal ---------------------------------------------------------------------------------


async def workflow_status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    """The status of the latest run of ``workflow_id`` (None: no such workflow)."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return description.status


async def settled_status(
    client: Client, workflow_id: str, *, timeout: float = SETTLE_SECONDS
) -> WorkflowExecutionStatus | None:
    """The status of ``workflow_id`` once it is no longer running, or RUNNING after ``timeout``.

    The database's final row comes first (finish_job writes it, then the workflow task that
    completes the run still has to be dispatched): a run that is still closing is given time.
    """
    deadline = time.monotonic() + timeout
    while True:
        status = await workflow_status(client, workflow_id)
        if status != WorkflowExecutionStatus.RUNNING or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


async def gather_limited(calls: Iterable[Awaitable[T]], limit: int = 32) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def terminate_prefix(client: Client, prefix: str) -> int:
    """Terminate every running workflow of an experiment (dispatchers, the pod watcher, …)."""
    ended = 0
    query = f"WorkflowId STARTS_WITH '{prefix}' AND ExecutionStatus = 'Running'"
    with contextlib.suppress(RPCError):
        async for execution in client.list_workflows(query):
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(execution.id).terminate("experiment over")
                ended += 1
    return ended


# --- invariants ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """Where the invariants are read from."""

    db: Database
    client: Client
    settings: Settings
    kube_url: str | None = None


async def ownership_violations(src: Sources) -> list[str]:
    """Every job not final has a running JobWorkflow; every PREEMPTING job and every ACTIVE
    preemption has a running saga. Safe while jobs move: a closed workflow only counts when
    the job (or the preemption) is still in the same state on a second read."""
    prefix = src.settings.workflow_id_prefix
    live = WorkflowExecutionStatus.RUNNING
    jobs = await patient(
        lambda: rows(
            src.db,
            "SELECT id, status::text AS status, preempted_by FROM jobs "
            "WHERE status::text <> ALL(%s)",
            (list(FINAL_STATUSES),),
        )
    )
    sagas = await patient(
        lambda: rows(src.db, "SELECT preemptor_id FROM preemptions WHERE status = 'ACTIVE'")
    )
    checks: list[tuple[str, str, str, tuple[object, ...]]] = []
    for job in jobs:
        checks.append(
            (
                job_workflow_id(job["id"], prefix),
                f"job {job['id']} is {job['status']}",
                "SELECT 1 FROM jobs WHERE id = %s AND status::text <> ALL(%s)",
                (job["id"], list(FINAL_STATUSES)),
            )
        )
        if job["status"] == "PREEMPTING":
            checks.append(
                (
                    preemption_workflow_id(job["preempted_by"], prefix),
                    f"job {job['id']} is PREEMPTING for {job['preempted_by']}",
                    "SELECT 1 FROM jobs WHERE id = %s AND status = 'PREEMPTING'",
                    (job["id"],),
                )
            )
    for saga in sagas:
        checks.append(
            (
                preemption_workflow_id(saga["preemptor_id"], prefix),
                f"preemption for {saga['preemptor_id']} is ACTIVE",
                "SELECT 1 FROM preemptions WHERE preemptor_id = %s AND status = 'ACTIVE'",
                (saga["preemptor_id"],),
            )
        )
    statuses = await gather_limited(workflow_status(src.client, wf) for wf, _, _, _ in checks)
    found: list[str] = []
    for (workflow_id, what, still, params), status in zip(checks, statuses, strict=True):
        if status == live:
            continue
        if await patient(lambda s=still, p=params: bool(rows(src.db, s, p))):  # type: ignore[misc]
            name = status.name if status is not None else "missing"
            found.append(f"{what} but workflow {workflow_id} is {name}")
    return found


def database_violations(db: Database, job_ids: Sequence[UUID]) -> list[str]:
    """The promises PostgreSQL's history can prove or refute, over the experiment's jobs."""
    found: list[str] = []
    ids = list(job_ids)
    for row in unfinished(db, ids):
        found.append(f"job lost: {row['id']} is still {row['status']} ({row['status_reason']})")
    missing = len(ids) - len(rows(db, "SELECT id FROM jobs WHERE id = ANY(%s)", (ids,)))
    if missing:
        found.append(f"job lost: {missing} submitted job(s) have no row at all")
    for row in rows(
        db,
        "SELECT job_id, attempt, count(*) AS n FROM job_events "
        "WHERE from_status = 'PENDING' AND to_status = 'ADMITTED' "
        "GROUP BY job_id, attempt HAVING count(*) > 1",
    ):
        found.append(f"admitted twice: job {row['job_id']} attempt {row['attempt']} ({row['n']}x)")
    # Every attempt a job ran (or was evicted in) was admitted exactly once before.
    for row in rows(
        db,
        "SELECT e.job_id, e.attempt FROM job_events e "
        "WHERE e.to_status IN ('RUNNING', 'SUCCEEDED', 'PREEMPTING', 'PREEMPTED') "
        "GROUP BY e.job_id, e.attempt "
        "HAVING NOT EXISTS (SELECT 1 FROM job_events a WHERE a.job_id = e.job_id "
        "  AND a.attempt = e.attempt AND a.from_status = 'PENDING' AND a.to_status = 'ADMITTED')",
    ):
        found.append(f"ran without admission: job {row['job_id']} attempt {row['attempt']}")
    for row in rows(
        db,
        "SELECT job_id, attempt, count(*) AS n FROM job_events WHERE to_status = 'PREEMPTED' "
        "GROUP BY job_id, attempt HAVING count(*) > 1",
    ):
        found.append(f"evicted twice: job {row['job_id']} attempt {row['attempt']} ({row['n']}x)")
    for row in rows(db, "SELECT id FROM jobs WHERE status = 'PREEMPTING'"):
        found.append(f"left PREEMPTING: job {row['id']}")
    for row in rows(db, "SELECT preemptor_id FROM preemptions WHERE status = 'ACTIVE'"):
        found.append(f"saga left ACTIVE: preemption for {row['preemptor_id']}")
    capacity = {
        r["name"]: r["gpu_capacity"] for r in rows(db, "SELECT name, gpu_capacity FROM pools")
    }
    for pool, peak in replay_pool_usage(db).items():
        if peak > capacity.get(pool, 0):
            found.append(f"pool {pool} over capacity: {peak} GPUs in use, {capacity[pool]} exist")
    try:
        assert_counters_consistent(db)
    except AssertionError as err:
        found.append(f"usage counters inconsistent: {err}")
    return found


async def temporal_violations(src: Sources, job_ids: Sequence[UUID]) -> list[str]:
    """Every job's workflow completed with the database's final status; every saga closed as
    completed (compensation is a completed saga too: it returns its outcome)."""
    prefix = src.settings.workflow_id_prefix
    found: list[str] = []

    async def job_outcome(
        job_id: UUID,
    ) -> tuple[UUID, WorkflowExecutionStatus | None, JobView | None]:
        handle = src.client.get_workflow_handle(job_workflow_id(job_id, prefix))
        status = await settled_status(src.client, handle.id)
        result = None
        if status == WorkflowExecutionStatus.COMPLETED:
            result = JobView.model_validate(await handle.result())
        return job_id, status, result

    outcomes = await gather_limited(job_outcome(j) for j in job_ids)
    db_status = {
        r["id"]: r["status"]
        for r in await patient(
            lambda: rows(
                src.db,
                "SELECT id, status::text AS status FROM jobs WHERE id = ANY(%s)",
                (list(job_ids),),
            )
        )
    }
    for job_id, status, result in outcomes:
        if status != WorkflowExecutionStatus.COMPLETED:
            found.append(
                f"workflow of job {job_id} is {status.name if status else 'missing'}, not COMPLETED"
            )
        elif result is None or result.status != db_status.get(job_id):
            found.append(
                f"workflow of job {job_id} returned {result and result.status}, "
                f"the database says {db_status.get(job_id)}"
            )
    preemptors = await patient(
        lambda: rows(src.db, "SELECT DISTINCT preemptor_id FROM preemptions")
    )
    saga_ids = [preemption_workflow_id(r["preemptor_id"], prefix) for r in preemptors]
    for workflow_id, status in zip(
        saga_ids,
        await gather_limited(settled_status(src.client, w) for w in saga_ids),
        strict=True,
    ):
        if status != WorkflowExecutionStatus.COMPLETED:
            found.append(f"saga {workflow_id} is {status.name if status else 'missing'}")
    return found


def pod_violations(kube_url: str, db: Database) -> list[str]:
    """Every pod that holds GPUs belongs to the current attempt of a job that is under way: no
    pod outlives its job, and no pod of an earlier (evicted) attempt still runs."""
    pods = EmulatorAdmin(kube_url).state()["pods"]
    live = [
        p
        for p in pods
        if p.get("phase") in ("Pending", "Running")
        and not p.get("terminating")
        and LABEL_JOB_ID in (p.get("labels") or {})
    ]
    if not live:
        return []
    jobs = {
        r["id"]: r
        for r in rows(
            db,
            "SELECT id, status::text AS status, attempt FROM jobs WHERE id = ANY(%s)",
            ([UUID(p["labels"][LABEL_JOB_ID]) for p in live],),
        )
    }
    found = []
    for pod in live:
        job = jobs.get(UUID(pod["labels"][LABEL_JOB_ID]))
        attempt = int(pod["labels"].get(LABEL_ATTEMPT, -1))
        if job is None:
            found.append(f"pod {pod['name']} is {pod['phase']} and belongs to no job")
        elif job["status"] in FINAL_STATUSES:
            found.append(f"pod {pod['name']} is {pod['phase']} but its job is {job['status']}")
        elif attempt != job["attempt"]:
            found.append(
                f"pod {pod['name']} of attempt {attempt} is {pod['phase']} but its job is at "
                f"attempt {job['attempt']} ({job['status']})"
            )
    return found


async def find_violations(src: Sources, job_ids: Sequence[UUID]) -> list[str]:
    """All the invariants of docs/en/reliability.md, after the experiment's jobs ended."""
    found = await patient(lambda: database_violations(src.db, job_ids))
    found += await temporal_violations(src, job_ids)
    found += await ownership_violations(src)
    if src.kube_url is not None:
        found += await patient(lambda: pod_violations(src.kube_url or "", src.db))
    return found


# --- reporting ---------------------------------------------------------------------------------


def event_counts(db: Database, job_ids: Sequence[UUID]) -> Counter[str]:
    """How many transitions of each kind the experiment's jobs went through."""
    counted: Counter[str] = Counter()
    for row in rows(
        db,
        "SELECT coalesce(from_status::text, '-') || '>' || to_status::text AS t, count(*) AS n "
        "FROM job_events WHERE job_id = ANY(%s) GROUP BY 1",
        (list(job_ids),),
    ):
        counted[row["t"]] = row["n"]
    return counted


def saga_outcomes(db: Database) -> Counter[str]:
    return Counter(
        {
            r["status"]: r["n"]
            for r in rows(
                db, "SELECT status::text AS status, count(*) AS n FROM preemptions GROUP BY 1"
            )
        }
    )


async def start_all(workers: Sequence[WorkerProcess]) -> None:
    """Start every worker, then wait until each polls (they start side by side)."""
    for worker in workers:
        worker.start()
    for worker in workers:
        await asyncio.to_thread(worker.wait_ready)


def timeline(db: Database, job_ids: Sequence[UUID], since: float | None = None) -> str:
    """Every transition of the jobs in order, for reading a slow or failed experiment."""
    events = rows(
        db,
        "SELECT extract(epoch FROM at) AS t, left(job_id::text, 8) AS job, attempt, "
        "coalesce(from_status::text, '-') AS f, to_status::text AS s, actor, reason "
        "FROM job_events WHERE job_id = ANY(%s) ORDER BY at",
        (list(job_ids),),
    )
    origin = since if since is not None else (float(events[0]["t"]) if events else 0.0)
    return "\n".join(
        f"{float(e['t']) - origin:8.2f} {e['job']} #{e['attempt']} {e['f']}>{e['s']} "
        f"[{e['actor']}] {e['reason']}"
        for e in events
    )


async def observe(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    seconds: float,
    interval: float = 0.5,
) -> T:
    """Poll ``probe`` until ``until(value)`` holds or ``seconds`` pass; the last value.

    For "this must not happen" checks: an effect that would show within a moment is given
    ``seconds`` to show, and the caller asserts on what was seen last.
    """
    deadline = time.monotonic() + seconds
    while True:
        value = await probe()
        if until(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)
