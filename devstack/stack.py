"""The embedded stack behind ``python starter.py up`` / ``down`` / ``status``.

One **supervisor** process owns every piece of a local quotaflow. It holds a lease on the
embedded PostgreSQL (and migrates it), and it starts and owns the Temporal dev server (Web UI,
our search attributes), the Kubernetes API emulator and one worker. Each child runs in a session
of its own, so a Ctrl-C in the terminal reaches the supervisor only, and the supervisor stops
them in order: the worker first (it still talks to the others), then the emulator and the dev
server, then it releases PostgreSQL (the last holder out stops it).

``up`` runs the supervisor in the foreground; ``up --detach`` starts it in the background and
returns once every piece is ready. The supervisor writes ``<state dir>/stack/state.json`` (pids
with their start times, ports, URLs, logs): ``status`` reads it and checks every pid, ``down``
signals the supervisor and waits for it. A supervisor killed with SIGKILL leaves its children
running: the next ``up`` or ``down`` finds them in the state file and stops their process groups
(a process counts only if its pid *and* start time match, so a reused pid is never hit), and the
dead supervisor's PostgreSQL lease no longer keeps the server up.

A connection setting that is set (``QF_DATABASE_URL``, ``QF_TEMPORAL_ADDRESS``, ``QF_KUBE_URL``
or a ``QF_KUBE_MODE`` other than ``emulator``) replaces that piece: the stack runs the others and
shows the configured one as external.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psutil
from pydantic import BaseModel, Field

from devstack.postgres import EmbeddedPostgres, EmbeddedPostgresError, Lease, port_in_use
from devstack.temporal import DevServerError, TemporalDevServer
from domain.errors import QuotaflowError
from settings import Settings, get_settings

log = logging.getLogger("quotaflow.stack")

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
POLL_SECONDS = 0.2
WATCH_SECONDS = 0.5
EMULATOR_READY_SECONDS = 20.0
WORKER_READY_SECONDS = 90.0
EMULATOR_EVICTION_GRACE_SECONDS = 3
# The worker's own graceful shutdown takes up to 10 s (worker.py); SIGKILL only after that.
WORKER_STOP_SECONDS = 20.0
EMULATOR_STOP_SECONDS = 5.0
# SIGHUP too: a closed terminal must not take the supervisor down without its children.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

Status = Literal["starting", "ready", "stopping", "stopped", "failed"]


class StackError(QuotaflowError):
    """The stack could not start, or a piece failed; the message names the piece and its log."""

    code = "stack"


class StackStopped(BaseException):
    """Raised by the supervisor's signal handler: unwinds it like Ctrl-C would."""


# --- the state file ----------------------------------------------------------------------


class Piece(BaseModel):
    """One piece of the stack as the supervisor recorded it."""

    title: str
    external: bool = False
    pid: int | None = None
    started: float | None = Field(
        default=None, description="Process start time: a pid with another start time is not ours."
    )
    port: int | None = None
    address: str | None = Field(default=None, description="DSN (no secrets), host:port or URL.")
    ui_url: str | None = None
    log: str | None = None

    @classmethod
    def of_process(cls, title: str, pid: int | None, **fields: Any) -> Piece:
        """A piece run by process ``pid``, recorded with its start time."""
        started = None
        if pid is not None:
            with contextlib.suppress(psutil.NoSuchProcess):  # gone already: nothing to stop
                started = Lease.of_process(pid).started
        return cls(title=title, pid=pid, started=started, **fields)

    def process(self) -> Lease | None:
        if self.pid is None or self.started is None:
            return None
        return Lease(pid=self.pid, started=self.started)

    def running(self) -> bool:
        process = self.process()
        return process is not None and process.alive()


class StackState(BaseModel):
    """``<state dir>/stack/state.json``: written by the supervisor only."""

    status: Status
    error: str | None = None
    state_dir: str
    supervisor_pid: int
    supervisor_started: float
    supervisor_log: str | None = None
    pieces: dict[str, Piece] = Field(default_factory=dict)

    def supervisor(self) -> Lease:
        return Lease(pid=self.supervisor_pid, started=self.supervisor_started)

    def supervisor_alive(self) -> bool:
        return self.supervisor().alive()


class PieceStatus(BaseModel):
    piece: str
    state: Literal["running", "stopped", "external"]
    pid: int | None
    port: int | None
    address: str | None
    log: str | None


class StackStatus(BaseModel):
    """What ``status`` shows: the recorded state, every pid checked."""

    running: bool
    status: Literal[Status, "stale", "not running"]
    state_dir: str
    supervisor_pid: int | None = None
    supervisor_log: str | None = None
    error: str | None = None
    pieces: list[PieceStatus] = Field(default_factory=list)


@dataclass
class DownReport:
    """What ``down`` did."""

    supervisor_pid: int | None = None
    cleaned: list[str] = field(default_factory=list)
    postgres_holders: list[int] = field(default_factory=list)


def redact_dsn(dsn: str) -> str:
    """``dsn`` without its password, in URL or ``key=value`` form."""
    parts = urlsplit(dsn)
    if parts.scheme.startswith("postgres"):
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
        query = urlencode(
            [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)], safe="*"
        )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)


def _same(a: Lease, b: Lease) -> bool:
    # Start times are floats computed by each process on its own: equal within a tick.
    return a.pid == b.pid and abs(a.started - b.started) < 0.01


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# --- processes -----------------------------------------------------------------------------


def _group_members(leader: Lease) -> list[psutil.Process]:
    """Live processes of the group ``leader`` led, started no earlier than it did.

    Found by scanning rather than ``killpg``: the leader may be gone while the rest of its
    group lives, and a group id whose leader died may later belong to someone else.
    """
    members = []
    for proc in psutil.process_iter():
        try:
            if (
                os.getpgid(proc.pid) == leader.pid
                and proc.create_time() >= leader.started - 0.01
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def stop_process_group(leader: Lease, timeout: float) -> bool:
    """SIGTERM the group of ``leader``, SIGKILL what is left after ``timeout``.

    Returns whether anything was running. ``psutil`` waits on (and so reaps) our own children.
    """
    members = _group_members(leader)
    for proc in members:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(members, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return bool(members)


def port_taken(port: int) -> bool:
    """Something listens on ``port`` (connect) or holds it (bind, which ignores TIME_WAIT)."""
    if port_in_use(port, HOST):
        return True
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def _dev_server_ports(pid: int) -> tuple[int | None, int | None]:
    """The frontend and UI ports a running ``temporal server start-dev`` was given."""
    try:
        args = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None, None

    def value(flag: str) -> int | None:
        with contextlib.suppress(ValueError, IndexError):
            return int(args[args.index(flag) + 1])
        return None

    return value("--port"), None if "--headless" in args else value("--ui-port")


class _FileLock:
    """An exclusive ``flock`` that can be released before the block ends (foreground ``up``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held across calls, closed in release()
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> _FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


# --- the stack as the commands see it ------------------------------------------------------


class Stack:
    """The stack of one state folder: ``up``, ``down`` and ``status`` for the CLI."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.state_dir = self.settings.state_dir.resolve()
        self.home = self.state_dir / "stack"
        self.state_file = self.home / "state.json"
        self.supervisor_log = self.home / "supervisor.log"

    def lock(self) -> _FileLock:
        """Serialises ``up`` and the clean-up in ``down`` (never held by a running supervisor)."""
        return _FileLock(self.home / "lock")

    def read_state(self) -> StackState | None:
        try:
            return StackState.model_validate_json(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def write_state(self, state: StackState) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.model_dump_json(indent=2))
        tmp.replace(self.state_file)

    def child_env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        # Children run from the repository: a relative state folder must not move with them.
        env["QF_STATE_DIR"] = str(self.state_dir)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(overrides)
        return env

    # --- status ---------------------------------------------------------------------------

    def status(self) -> StackStatus:
        state = self.read_state()
        if state is None:
            return StackStatus(running=False, status="not running", state_dir=str(self.state_dir))
        pieces: list[PieceStatus] = []
        for name, piece in state.pieces.items():
            running = piece.running()
            row_state: Literal["running", "stopped", "external"] = (
                "external" if piece.external else "running" if running else "stopped"
            )
            pieces.append(
                PieceStatus(
                    piece=piece.title,
                    state=row_state,
                    pid=piece.pid if running else None,
                    port=piece.port,
                    address=piece.address,
                    log=piece.log,
                )
            )
            if name == "temporal" and piece.ui_url:
                pieces.append(
                    PieceStatus(
                        piece="Temporal Web UI",
                        state=row_state,
                        pid=piece.pid if running else None,
                        port=urlsplit(piece.ui_url).port,
                        address=piece.ui_url,
                        log=piece.log,
                    )
                )
        alive = state.supervisor_alive()
        if alive:
            shown: Literal[Status, "stale", "not running"] = state.status
        elif any(p.state == "running" for p in pieces):
            shown = "stale"  # the supervisor was killed; `up` or `down` cleans up
        else:
            shown = "failed" if state.status == "failed" else "not running"
        return StackStatus(
            running=alive,
            status=shown,
            state_dir=str(self.state_dir),
            supervisor_pid=state.supervisor_pid if alive else None,
            supervisor_log=state.supervisor_log,
            error=state.error,
            pieces=pieces,
        )

    # --- up -------------------------------------------------------------------------------

    def up_detached(self, timeout: float) -> tuple[StackState, bool]:
        """Start the supervisor in the background; returns its state once ready, and whether
        it was already running."""
        with self.lock():
            running = self._running_or_cleaned(timeout)
            if running is not None:
                return running, True
            self.home.mkdir(parents=True, exist_ok=True)
            with open(self.supervisor_log, "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "devstack.stack"],
                    cwd=REPO,
                    env=self.child_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                return self._wait_ready(Lease.of_process(proc.pid), timeout, launched=proc), False
            except KeyboardInterrupt:
                # Ctrl-C while waiting: the half-started stack must not stay behind.
                proc.terminate()
                proc.wait(WORKER_STOP_SECONDS + 30)
                raise
            finally:
                # Only a supervisor that already exited is reaped here; a running one is
                # adopted by init when this command returns.
                proc.poll()

    def run_foreground(
        self, on_ready: Callable[[StackState, bool], None], timeout: float
    ) -> StackState:
        """Be the supervisor until SIGINT / SIGTERM; ``on_ready(state, reused)`` runs once every
        piece is ready. A stack that already runs is reused: ``on_ready`` and return."""
        lock = self.lock()
        lock.acquire()
        try:
            running = self._running_or_cleaned(timeout)
            if running is not None:
                lock.release()
                on_ready(running, True)
                return running

            def ready(state: StackState) -> None:
                lock.release()
                on_ready(state, False)

            return Supervisor(self, on_ready=ready).run()
        finally:
            lock.release()

    def _running_or_cleaned(self, timeout: float) -> StackState | None:
        """Under the lock: the running stack's state once ready, or None after clearing up
        whatever a dead supervisor left behind."""
        state = self.read_state()
        if state is not None and state.supervisor_alive():
            if state.status != "stopping":
                return self._wait_ready(state.supervisor(), timeout)
            self._wait_exit(state, timeout)
        self.clean_up(self.read_state(), servers=False)
        return None

    def _wait_ready(
        self, supervisor: Lease, timeout: float, launched: subprocess.Popen[bytes] | None = None
    ) -> StackState:
        deadline = time.monotonic() + timeout
        while True:
            state = self.read_state()
            ours = state if state is not None and _same(state.supervisor(), supervisor) else None
            if ours is not None and ours.status == "ready":
                return ours
            if ours is not None and ours.status in ("failed", "stopped"):
                raise StackError(ours.error or "the stack was stopped while it started")
            exited = launched.poll() is not None if launched is not None else ours is None
            if exited or (ours is not None and not ours.supervisor_alive()):
                # Re-read: the supervisor writes its final state just before it exits.
                final = self.read_state()
                if final is not None and _same(final.supervisor(), supervisor) and final.error:
                    raise StackError(final.error)
                raise StackError(f"the stack supervisor exited; see {self.supervisor_log}")
            if time.monotonic() > deadline:
                if launched is not None:
                    launched.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        launched.wait(WORKER_STOP_SECONDS + 30)
                raise StackError(
                    f"the stack was not ready within {timeout:.0f}s; see {self.supervisor_log}"
                )
            time.sleep(POLL_SECONDS)

    def _wait_exit(self, state: StackState, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while state.supervisor_alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    # --- down -----------------------------------------------------------------------------

    def down(self, timeout: float) -> DownReport:
        """Stop the supervisor (it stops its pieces), then whatever a killed one left."""
        report = DownReport()
        for _ in range(3):
            state = self.read_state()
            if state is not None and state.supervisor_alive():
                report.supervisor_pid = state.supervisor_pid
                self._stop_supervisor(state, timeout)
            with self.lock():
                state = self.read_state()
                if state is not None and state.supervisor_alive():
                    continue  # an `up` finished starting while we waited for the lock
                report.cleaned = self.clean_up(state)
                report.postgres_holders = self._postgres_holders()
                if state is not None:
                    self.state_file.unlink(missing_ok=True)
                return report
        raise StackError("a stack keeps starting while `down` stops it; try again")

    def _stop_supervisor(self, state: StackState, timeout: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.supervisor_pid, signal.SIGTERM)
        if not self._wait_exit(state, timeout):
            log.warning(
                "the supervisor (pid %s) did not stop in time: killing it", state.supervisor_pid
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.supervisor_pid, signal.SIGKILL)
            self._wait_exit(state, 10)

    def clean_up(self, state: StackState | None, *, servers: bool = True) -> list[str]:
        """Stop what a supervisor that is gone left running; returns what was stopped.

        Its worker and emulator always go. The servers go only with ``servers`` (``down``):
        ``up`` reuses a dev server and a PostgreSQL that still run.
        """
        cleaned: list[str] = []
        if state is not None and not state.supervisor_alive():
            for name, budget in (
                ("worker", WORKER_STOP_SECONDS),
                ("emulator", EMULATOR_STOP_SECONDS),
            ):
                piece = state.pieces.get(name)
                process = piece.process() if piece is not None else None
                if (
                    piece is not None
                    and process is not None
                    and stop_process_group(process, budget)
                ):
                    cleaned.append(f"{piece.title} (pid {piece.pid})")
        if not servers:
            return cleaned
        # The dev server of this state folder is ours whoever started it (see devstack.temporal).
        server = TemporalDevServer(self.state_dir)
        pid = server.pid()
        if pid is not None:
            server.stop()
            cleaned.append(f"Temporal dev server (pid {pid})")
        # The dead supervisor's lease no longer counts; a live holder keeps the server up.
        postgres = self._embedded_postgres()
        if postgres is not None and postgres.is_running() and not postgres.live_holders():
            pid = postgres.postmaster_pid()
            postgres.stop()
            cleaned.append(f"PostgreSQL (pid {pid})")
        return cleaned

    def _embedded_postgres(self) -> EmbeddedPostgres | None:
        # Only a folder that already holds one: creating the object prepares folders.
        if not (self.state_dir / "postgres").is_dir():
            return None
        return EmbeddedPostgres(self.state_dir, port=self.settings.pg_port)

    def _postgres_holders(self) -> list[int]:
        postgres = self._embedded_postgres()
        if postgres is None or not postgres.is_running():
            return []
        return [lease.pid for lease in postgres.live_holders()]


# --- the supervisor ------------------------------------------------------------------------


class Supervisor:
    """Starts the pieces in order, watches them, and stops them in reverse order."""

    def __init__(self, stack: Stack, on_ready: Callable[[StackState], None] | None = None) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.on_ready = on_ready
        me = Lease.of_process(os.getpid())
        self.state = StackState(
            status="starting",
            state_dir=str(stack.state_dir),
            supervisor_pid=me.pid,
            supervisor_started=me.started,
            supervisor_log=str(stack.supervisor_log),
        )
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.postgres: EmbeddedPostgres | None = None
        self.temporal: TemporalDevServer | None = None
        self.dsn = ""
        self.temporal_address = ""
        self.kube_url: str | None = None
        self._stopping = False

    def run(self) -> StackState:
        """Start, then watch until a signal or a failure; always stop everything."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        outcome: Status = "stopped"
        error: str | None = None
        try:
            self._save()
            self._check_ports()
            self._start_postgres()
            self._start_temporal()
            self._start_emulator()
            self._start_worker()
            self.state.status = "ready"
            self._save()
            log.info("the stack is ready")
            if self.on_ready is not None:
                self.on_ready(self.state)
            self._watch()
        except StackStopped as stop:
            log.info("%s: stopping the stack", stop)
        except StackError as exc:
            self._stopping = True  # a signal now must not interrupt the clean-up below
            outcome, error = "failed", exc.message
            log.error("%s", exc.message)
        except Exception as exc:
            self._stopping = True
            outcome, error = "failed", f"the stack supervisor failed: {exc!r}"
            log.exception("the stack supervisor failed")
        finally:
            # From here on a signal only logs: a second Ctrl-C must not cut the clean-up short.
            self._stopping = True
            self.state.status = "stopping"
            self._save()
            self._stop_all()
            self.state.status, self.state.error = outcome, error
            self._save()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.state

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            log.info("still stopping the stack")
            return
        self._stopping = True
        raise StackStopped(signal.Signals(signum).name)

    def _save(self) -> None:
        self.stack.write_state(self.state)

    # --- start ----------------------------------------------------------------------------

    @property
    def _embedded_database(self) -> bool:
        return self.settings.database_url is None

    @property
    def _dev_server(self) -> bool:
        return self.settings.temporal_address is None

    @property
    def _emulator(self) -> bool:
        return self.settings.kube_mode == "emulator" and self.settings.kube_url is None

    def _check_ports(self) -> None:
        """Every port a piece would bind must be free (or held by our own running piece)
        before anything starts."""
        s = self.settings
        wanted: list[tuple[int, str, str]] = []
        if self._embedded_database:
            self.postgres = self._new_postgres()
            if not self.postgres.is_running():
                wanted.append((s.pg_port, "PostgreSQL", "QF_PG_PORT"))
        if self._dev_server:
            self.temporal = TemporalDevServer(
                self.stack.state_dir,
                port=s.temporal_port,
                ui_port=s.temporal_ui_port,
                headless=s.temporal_headless,
                namespace=s.temporal_namespace,
            )
            pid = self.temporal.pid()
            if pid is None:
                wanted.append((s.temporal_port, "Temporal frontend", "QF_TEMPORAL_PORT"))
                if not s.temporal_headless:
                    wanted.append((s.temporal_ui_port, "Temporal Web UI", "QF_TEMPORAL_UI_PORT"))
            else:
                port, ui_port = _dev_server_ports(pid)
                ui = f"Web UI {ui_port}" if ui_port else "headless"
                if port != s.temporal_port or (
                    not s.temporal_headless and ui_port != s.temporal_ui_port
                ):
                    raise StackError(
                        f"the Temporal dev server of {self.stack.state_dir} (pid {pid}) runs on "
                        f"port {port} ({ui}), not on the configured "
                        f"{s.temporal_port} ({s.temporal_ui_port}); stop it with "
                        "`python starter.py down` or configure its ports"
                    )
        if self._emulator:
            wanted.append((s.kube_emulator_port, "Kubernetes emulator", "QF_KUBE_EMULATOR_PORT"))
        taken = [
            f"port {port} ({what}, {setting})" for port, what, setting in wanted if port_taken(port)
        ]
        if taken:
            raise StackError(
                f"{' and '.join(taken)} on {HOST} {'is' if len(taken) == 1 else 'are'} taken "
                "by another program; nothing was started (set the setting to a free port)"
            )

    def _new_postgres(self) -> EmbeddedPostgres:
        try:
            return EmbeddedPostgres(self.stack.state_dir, port=self.settings.pg_port)
        except EmbeddedPostgresError as exc:
            raise StackError(f"PostgreSQL: {_first_line(exc)}") from exc

    def _start_postgres(self) -> None:
        if not self._embedded_database:
            assert self.settings.database_url is not None
            self.dsn = self.settings.database_url.get_secret_value()
            self.state.pieces["postgres"] = Piece(
                title="PostgreSQL", external=True, address=redact_dsn(self.dsn)
            )
            return
        postgres = self.postgres or self._new_postgres()
        self.postgres = postgres
        log.info("starting PostgreSQL on port %s", postgres.port)
        try:
            self.dsn = postgres.acquire()
        except EmbeddedPostgresError as exc:
            raise StackError(
                f"PostgreSQL did not start: {_first_line(exc)}; see {postgres.log_file}"
            ) from exc
        self._migrate()
        self.state.pieces["postgres"] = Piece.of_process(
            "PostgreSQL",
            postgres.postmaster_pid(),
            port=postgres.port,
            address=redact_dsn(self.dsn),
            log=str(postgres.log_file),
        )
        self._save()

    def _migrate(self) -> None:
        import psycopg

        from store.migrate import migrate

        try:
            with psycopg.connect(self.dsn, connect_timeout=10) as conn:
                applied = migrate(conn)
        except (psycopg.Error, QuotaflowError) as exc:
            raise StackError(f"the migrations failed on {redact_dsn(self.dsn)}: {exc}") from exc
        if applied:
            log.info("applied %d migration(s): %s", len(applied), ", ".join(applied))

    def _start_temporal(self) -> None:
        if not self._dev_server:
            assert self.settings.temporal_address is not None
            self.temporal_address = self.settings.temporal_address
            self.state.pieces["temporal"] = Piece(
                title="Temporal", external=True, address=self.temporal_address
            )
            return
        server = self.temporal
        assert server is not None
        log.info("starting the Temporal dev server on port %s", server.port)
        try:
            self.temporal_address = server.start()
        except DevServerError as exc:
            raise StackError(f"Temporal dev server: {_first_line(exc)}") from exc
        self.state.pieces["temporal"] = Piece.of_process(
            "Temporal dev server",
            server.pid(),
            port=server.port,
            address=self.temporal_address,
            ui_url=server.ui_url,
            log=str(server.log_file),
        )
        self._save()

    def _spawn(self, name: str, title: str, args: list[str], env: dict[str, str]) -> Piece:
        log_file = self.stack.home / f"{name}.log"
        with open(log_file, "ab") as out:
            # A session of its own: a Ctrl-C in the terminal reaches only the supervisor,
            # which stops the children in order.
            proc = subprocess.Popen(
                args,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children[name] = proc
        piece = Piece.of_process(title, proc.pid, log=str(log_file))
        self.state.pieces[name] = piece
        self._save()  # before waiting: a killed supervisor's successor must find this child
        return piece

    def _start_emulator(self) -> None:
        s = self.settings
        if not self._emulator:
            self.kube_url = s.kube_url
            where = s.kube_url or (
                "in-cluster config" if s.kube_mode == "incluster" else "kubeconfig"
            )
            self.state.pieces["emulator"] = Piece(title="Kubernetes", external=True, address=where)
            return
        port = s.kube_emulator_port
        log.info("starting the Kubernetes emulator on port %s", port)
        piece = self._spawn(
            "emulator",
            "Kubernetes emulator",
            [sys.executable, "-m", "k8s.emulator", "--host", HOST, "--port", str(port)],
            self.stack.child_env(),
        )
        url = f"http://{HOST}:{port}"
        piece.port, piece.address = port, url
        self._save()
        deadline = time.monotonic() + EMULATOR_READY_SECONDS
        while not _answers(f"{url}/healthz"):
            self._fail_if_exited("emulator")
            if time.monotonic() > deadline:
                raise StackError(
                    f"the Kubernetes emulator did not answer on {url} within "
                    f"{EMULATOR_READY_SECONDS:.0f}s; see {piece.log}"
                )
            time.sleep(POLL_SECONDS)
        self.kube_url = url

    def _start_worker(self) -> None:
        s = self.settings
        overrides = {
            "QF_DATABASE_URL": self.dsn,
            "QF_TEMPORAL_ADDRESS": self.temporal_address,
            "QF_TEMPORAL_NAMESPACE": s.temporal_namespace,
        }
        if self._emulator and self.kube_url is not None:
            overrides |= {"QF_KUBE_MODE": "emulator", "QF_KUBE_URL": self.kube_url}
            if s.eviction_grace_seconds is None:
                # Emulated pods hold nothing worth 30 s of grace: evictions in the local stack
                # finish in a few seconds, so a preemption story stays short.
                overrides["QF_EVICTION_GRACE_SECONDS"] = str(EMULATOR_EVICTION_GRACE_SECONDS)
        log.info("starting the worker on task queue %r", s.task_queue)
        piece = self._spawn(
            "worker", "Worker", [sys.executable, "worker.py"], self.stack.child_env(**overrides)
        )
        piece.address = f"task queue {s.task_queue} (namespace {s.temporal_namespace})"
        self._save()
        proc = self.children["worker"]
        polling = asyncio.run(
            _wait_for_poller(
                self.temporal_address,
                s.temporal_namespace,
                s.task_queue,
                # The SDK's default identity is "<pid>@<host>" (temporalio.service).
                identity_prefix=f"{proc.pid}@",
                gone=lambda: proc.poll() is not None,
                timeout=WORKER_READY_SECONDS,
            )
        )
        if not polling:
            self._fail_if_exited("worker")
            raise StackError(
                f"the worker did not poll task queue {s.task_queue!r} within "
                f"{WORKER_READY_SECONDS:.0f}s; see {piece.log}"
            )

    def _fail_if_exited(self, name: str) -> None:
        proc = self.children.get(name)
        code = proc.poll() if proc is not None else None
        if proc is not None and code is not None:
            piece = self.state.pieces[name]
            raise StackError(
                f"{piece.title} (pid {proc.pid}) exited with code {code}; see {piece.log}"
            )

    # --- run and stop ---------------------------------------------------------------------

    def _watch(self) -> None:
        """Until a signal: a piece that dies takes the whole stack down (and says why)."""
        while True:
            for name in self.children:
                self._fail_if_exited(name)
            if self.temporal is not None and not self.temporal.is_running():
                raise StackError(f"the Temporal dev server stopped; see {self.temporal.log_file}")
            if self.postgres is not None and not self.postgres.is_running():
                raise StackError(f"PostgreSQL stopped; see {self.postgres.log_file}")
            time.sleep(WATCH_SECONDS)

    def _stop_all(self) -> None:
        """Worker, emulator, dev server, PostgreSQL: each step runs even if one before failed."""
        steps: list[tuple[str, Callable[[], object]]] = [
            ("worker", lambda: self._stop_child("worker", WORKER_STOP_SECONDS)),
            ("emulator", lambda: self._stop_child("emulator", EMULATOR_STOP_SECONDS)),
        ]
        if self.temporal is not None:
            steps.append(("Temporal dev server", self.temporal.stop))
        if self.postgres is not None:
            # The last holder out stops the server; another live holder keeps it up.
            steps.append(("PostgreSQL", self.postgres.release))
        for what, step in steps:
            try:
                step()
            except Exception:
                log.exception("stopping the %s failed", what)
        log.info("the stack is stopped")

    def _stop_child(self, name: str, timeout: float) -> None:
        piece = self.state.pieces.get(name)
        process = piece.process() if piece is not None else None
        if process is not None and stop_process_group(process, timeout):
            log.info("stopped the %s (pid %s)", name, process.pid)
        proc = self.children.get(name)
        if proc is not None:
            proc.poll()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


async def _wait_for_poller(
    address: str,
    namespace: str,
    task_queue: str,
    *,
    identity_prefix: str,
    gone: Callable[[], bool],
    timeout: float,
) -> bool:
    """True once a poller whose identity starts with ``identity_prefix`` polls ``task_queue``;
    False when ``gone()`` or after ``timeout``."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client

    client = await Client.connect(address, namespace=namespace)
    request = DescribeTaskQueueRequest(
        namespace=namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not gone():
        response = await client.workflow_service.describe_task_queue(request)
        if any(p.identity.startswith(identity_prefix) for p in response.pollers):
            return True
        await asyncio.sleep(POLL_SECONDS)
    return False


def main() -> int:
    """``python -m devstack.stack``: the detached supervisor (``up --detach`` starts it)."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stdout,
    )
    final = Supervisor(Stack()).run()
    return 1 if final.status == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
