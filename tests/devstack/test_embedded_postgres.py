"""The embedded server's lifecycle: leases, the reaper, SIGKILL, reuse."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from devstack.postgres import EmbeddedPostgres, EmbeddedPostgresError, free_port

HOLDER = """
import sys, time
from collections.abc import Callable
from pathlib import Path
from devstack.postgres import EmbeddedPostgres
server = EmbeddedPostgres(Path(sys.argv[1]), port=int(sys.argv[2]), durable=False,
                          reaper_grace_seconds=1.0)
server.acquire()
print("ready", flush=True)
time.sleep(600)
"""


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def state_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="qf-embedded-"))


def start_holder(state: Path, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state), str(port)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_sigkilled_holder_leaves_no_orphan_and_does_not_block_the_next_start(
    state_dir: Path,
) -> None:
    port = free_port()
    holder = start_holder(state_dir, port)
    server = EmbeddedPostgres(state_dir, port=port, durable=False)
    assert server.is_running()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    # nobody holds it any more: the reaper stops it after its grace period
    assert wait_for(lambda: not server.is_running()), server.log_tail()
    # and a new start works (stale postmaster.pid and all)
    second = start_holder(state_dir, port)
    try:
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        second.kill()
        second.wait()
    assert wait_for(lambda: not server.is_running())


def test_holders_share_one_server_and_the_last_one_out_stops_it(state_dir: Path) -> None:
    port = free_port()
    first = EmbeddedPostgres(state_dir, port=port, durable=False)
    holder = start_holder(state_dir, port)
    try:
        first.acquire()
        pid = first.postmaster_pid()
        first.release()  # the other holder still needs it
        assert first.postmaster_pid() == pid
    finally:
        holder.kill()
        holder.wait()
    assert wait_for(lambda: not first.is_running())


def test_a_taken_port_is_named(state_dir: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        server = EmbeddedPostgres(state_dir, port=taken, durable=False)
        with pytest.raises(EmbeddedPostgresError, match=f"port {taken} .* is taken"):
            server.acquire()
