"""The whole quotaflow stack for one benchmark run, in processes of its own, always torn down.

A run gets a fresh durable embedded PostgreSQL (temporary folder under /tmp, free port), a
headless Temporal dev server (temporary folder, free ports), the Kubernetes API emulator
(``python -m k8s.emulator`` on a free port) and two worker processes on the same dev server:
``python worker.py`` (quotaflow) and ``python -m bench.orchestration_bare`` (the yardstick).
Workers are separate processes, as in production, so the benchmark driver's event loop never
competes with theirs inside one interpreter. Everything is stopped in reverse order when the
``bench_stack`` block ends — normally, on an exception, or on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo

import psutil
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from devstack.postgres import EmbeddedPostgres, free_port
from devstack.temporal import TemporalDevServer
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

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "quotaflow"
LIFECYCLE_POOL = "bench"
SAGA_POOL = "saga"
QUOTAFLOW_QUEUE = "qf-bench"
BARE_QUEUE = "bare-bench"
READY_TIMEOUT = 60.0
TMPFS = "/dev/shm"


@dataclass(frozen=True)
class StackOptions:
    """What the worker is configured with (each becomes a ``QF_`` variable)."""

    saga_gpus: int = 8
    start_delay_seconds: float = 0.01
    dispatcher_idle_seconds: float = 5.0
    claim_batch_size: int = 50
    job_poll_seconds: float = 120.0
    # The same victims are preempted over and over by the saga benchmark; the requeue backoff
    # (a fairness policy that delays a job's return, not part of any saga) would otherwise
    # leave a GPU idle after two sagas and the next high-priority job would need no victim.
    requeue_backoff_after: int = 1_000_000
    # "tmpfs": the dev server's SQLite file under /dev/shm, as fast as its in-memory store
    # (DESIGN §8 measured in memory); "disk": under /tmp, fsynced like a real database.
    temporal_store: str = "tmpfs"


@dataclass(frozen=True)
class BenchWorld:
    admin_id: uuid.UUID
    alice_id: uuid.UUID
    team_id: uuid.UUID


@dataclass
class Stack:
    """The running pieces, as the benchmark driver sees them."""

    state: Path
    dsn: str
    temporal_address: str
    kube_url: str
    options: StackOptions
    settings: Settings  # the client-side view: task queue, id prefix, poll interval
    store: Store
    world: BenchWorld
    client: Client
    quotaflow_worker: Child
    bare_worker: Child
    processes: dict[str, int]  # name → pid of every process of the run, for CPU accounting

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each process (the driver without its children: the others)."""
        return {
            name: cpu_seconds(pid, descendants=pid != os.getpid())
            for name, pid in self.processes.items()
        }


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """CPU time of a process, and of its descendants (the exited ones it reaped included)."""
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        if not descendants:
            return float(times.user + times.system)
        total = times.user + times.system + times.children_user + times.children_system
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
        return float(total)
    except psutil.NoSuchProcess:
        return 0.0


class Child:
    """A child process with its output in a log file; stopped by its own pid only."""

    def __init__(
        self, name: str, args: list[str], log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.args = args
        self.log = log
        self.env = dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with open(self.log, "ab") as out:
            # A session of its own: a Ctrl-C in the terminal reaches only the driver, which
            # then stops every child in order (workers before the servers they talk to).
            self.proc = subprocess.Popen(
                self.args,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def wait_for(self, marker: str, timeout: float = READY_TIMEOUT) -> None:
        """Wait until ``marker`` appears in the log; fail with the log's tail if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log.read_text(errors="replace"):
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} did not get ready; last lines of {self.log}:\n{self.tail()}"
        )

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def python_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QF_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def worker_env(
    *,
    dsn: str,
    temporal_address: str,
    kube_url: str,
    prefix: str,
    state: Path,
    options: StackOptions,
) -> dict[str, str]:
    return python_env(
        {
            "QF_STATE_DIR": str(state / "worker"),
            "QF_DATABASE_URL": dsn,
            "QF_TEMPORAL_ADDRESS": temporal_address,
            "QF_TASK_QUEUE": QUOTAFLOW_QUEUE,
            "QF_WORKFLOW_ID_PREFIX": prefix,
            "QF_KUBE_MODE": "emulator",
            "QF_KUBE_URL": kube_url,
            "QF_KUBE_NAMESPACE": NAMESPACE,
            "QF_EVICTION_GRACE_SECONDS": "0",
            "QF_DISPATCHER_IDLE_SECONDS": str(options.dispatcher_idle_seconds),
            "QF_CLAIM_BATCH_SIZE": str(options.claim_batch_size),
            "QF_JOB_POLL_SECONDS": str(options.job_poll_seconds),
            "QF_REQUEUE_BACKOFF_AFTER": str(options.requeue_backoff_after),
        }
    )


def seed_world(store: Store, options: StackOptions) -> BenchWorld:
    """root (admin), alice (member of org), org/team with a large always-on GPU plan, two pools.

    The lifecycle pool is large enough that no job ever waits for capacity; the saga pool is
    small so that a few low-priority jobs fill it.
    """
    admin = store.tenants.create_user(CreateUser(username="root", platform_admin=True))
    alice = store.tenants.create_user(CreateUser(username="alice"))
    org = store.projects.create(CreateProject(name="org", owner_id=admin.id))
    team = store.projects.create(CreateProject(name="team", owner_id=admin.id, parent_id=org.p_id))
    store.tenants.grant(GrantRole(principal_id=alice.id, project_id=org.p_id, role=Role.MEMBER))
    store.catalog.set_pool(
        SetPool(name=LIFECYCLE_POOL, gpu_capacity=1_000_000, cpu_capacity=10_000_000)
    )
    store.catalog.set_pool(
        SetPool(name=SAGA_POOL, gpu_capacity=options.saga_gpus, cpu_capacity=10_000_000)
    )
    # In quota: preemption is for in-quota jobs blocked by the pool (DESIGN §5).
    store.plans.add(
        AddPlan(
            project_id=team.p_id,
            resource_owner_id=admin.id,
            resource_type=ResourceType.GPU,
            quantity=1_000_000,
            window="always",
        )
    )
    return BenchWorld(admin_id=admin.id, alice_id=alice.id, team_id=team.p_id)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the ``finally`` blocks stop every child."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.asynccontextmanager
async def bench_stack(options: StackOptions, *, keep_state: bool = False) -> AsyncIterator[Stack]:
    """Start PostgreSQL, Temporal, the emulator and both workers; stop them all at the end."""
    state = Path(tempfile.mkdtemp(prefix="orchbench-", dir="/tmp"))
    prefix = f"b{uuid.uuid4().hex[:8]}-"
    with contextlib.ExitStack() as cleanup:
        if not keep_state:
            cleanup.callback(shutil.rmtree, state, ignore_errors=True)

        postgres = EmbeddedPostgres(state / "pg", port=free_port(), durable=True)
        cleanup.callback(stop_postgres, postgres)
        dsn = postgres.acquire()
        with Database(dsn, max_size=2) as db, db.connection() as conn:
            migrate(conn)

        temporal, temporal_address = start_temporal(
            cleanup, state, tmpfs=options.temporal_store == "tmpfs", keep=keep_state
        )
        emulator, kube_url = start_emulator(
            cleanup, state / "emulator.log", start_delay=options.start_delay_seconds
        )

        store = Store(Database(dsn, min_size=1, max_size=4), ZoneInfo("UTC"))
        cleanup.callback(store.close)
        world = seed_world(store, options)

        quotaflow_worker = Child(
            "quotaflow worker",
            [sys.executable, "worker.py"],
            state / "worker.log",
            worker_env(
                dsn=dsn,
                temporal_address=temporal_address,
                kube_url=kube_url,
                prefix=prefix,
                state=state,
                options=options,
            ),
        )
        bare_worker = Child(
            "bare worker",
            [
                sys.executable,
                "-m",
                "bench.orchestration_bare",
                "--address",
                temporal_address,
                "--task-queue",
                BARE_QUEUE,
            ],
            state / "bare-worker.log",
            python_env({}),
        )
        # Registered after the servers: ExitStack unwinds in reverse, so workers stop first.
        cleanup.callback(quotaflow_worker.stop)
        cleanup.callback(bare_worker.stop)
        quotaflow_worker.start()
        bare_worker.start()
        quotaflow_worker.wait_for("worker ready on task queue")
        bare_worker.wait_for("bare worker ready")

        client = await Client.connect(temporal_address, data_converter=pydantic_data_converter)
        settings = Settings(
            task_queue=QUOTAFLOW_QUEUE,
            workflow_id_prefix=prefix,
            temporal_address=temporal_address,
            database_url=dsn,
            kube_url=kube_url,
            kube_namespace=NAMESPACE,
            job_poll_seconds=options.job_poll_seconds,
            eviction_grace_seconds=0,
        )
        yield Stack(
            state=state,
            dsn=dsn,
            temporal_address=temporal_address,
            kube_url=kube_url,
            options=options,
            settings=settings,
            store=store,
            world=world,
            client=client,
            quotaflow_worker=quotaflow_worker,
            bare_worker=bare_worker,
            processes={
                "quotaflow worker": _pid(quotaflow_worker.pid),
                "bare worker": _pid(bare_worker.pid),
                "Temporal dev server": _pid(temporal.pid()),
                "PostgreSQL": _pid(postgres.postmaster_pid()),
                "kube emulator": _pid(emulator.pid),
                "benchmark driver": os.getpid(),
            },
        )


def _pid(pid: int | None) -> int:
    if pid is None:
        raise RuntimeError("a process of the stack is not running")
    return pid


def start_temporal(
    cleanup: contextlib.ExitStack, state: Path, *, tmpfs: bool, keep: bool
) -> tuple[TemporalDevServer, str]:
    """A headless dev server, stopped by ``cleanup``; and its address.

    With ``tmpfs`` its SQLite file goes under /dev/shm (as fast as the in-memory store DESIGN §8
    measured; the histories still outlive the run for reading when ``keep``).
    """
    home = state
    if tmpfs and Path(TMPFS).is_dir():
        home = Path(tempfile.mkdtemp(prefix="quotaflow-bench-temporal-", dir=TMPFS))
        if not keep:
            cleanup.callback(shutil.rmtree, home, ignore_errors=True)
    temporal = TemporalDevServer(home, port=free_port(), ui_port=free_port(), headless=True)
    cleanup.callback(temporal.stop)
    return temporal, temporal.start()


def start_emulator(
    cleanup: contextlib.ExitStack, log: Path, *, start_delay: float
) -> tuple[Child, str]:
    """``python -m k8s.emulator`` in a process of its own, stopped by ``cleanup``; and its URL."""
    port = free_port()
    emulator = Child(
        "kube emulator",
        [
            *(sys.executable, "-m", "k8s.emulator", "--port", str(port)),
            *("--start-delay", str(start_delay), "--log-level", "WARNING"),
        ],
        log,
        python_env({}),
    )
    cleanup.callback(emulator.stop)
    emulator.start().wait_for("kube emulator serving")
    return emulator, f"http://127.0.0.1:{port}"


def stop_postgres(server: EmbeddedPostgres) -> None:
    server.stop()
    # As root the data folder may live under /var/tmp/quotaflow (see devstack.postgres).
    if server.data_dir.parent != server.home:
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
