"""The embedded stack end to end (``starter.py up / status / down`` in subprocesses, on free
ports and a temporary state folder under /tmp), and the docker compose file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.postgres import Lease, free_port
from devstack.stack import port_taken, redact_dsn
from settings import Settings
from tests.devstack.test_embedded_postgres import wait_for
from workflows.shared import SEARCH_ATTRIBUTES

REPO = Path(__file__).resolve().parents[2]
COMMAND_SECONDS = 120


@dataclass
class StackEnv:
    """One state folder and four free ports, shared by the tests of this module."""

    state_dir: Path
    ports: dict[str, int]
    env: dict[str, str]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "starter.py", *args],
            cwd=REPO,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        done = self.run("status", "--json")
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def state(self) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = json.loads((self.state_dir / "stack/state.json").read_text())
        except (OSError, ValueError):
            return None
        return result

    def processes(self) -> dict[str, Lease]:
        """The supervisor and every recorded piece, as (pid, start time)."""
        state = self.state()
        assert state is not None
        found = {"supervisor": Lease(state["supervisor_pid"], state["supervisor_started"])}
        for name, piece in state["pieces"].items():
            if piece.get("pid") is not None:
                found[name] = Lease(piece["pid"], piece["started"])
        return found

    def assert_nothing_runs(self, processes: dict[str, Lease]) -> None:
        still = {name: p.pid for name, p in processes.items() if p.alive()}
        assert not still, f"still running: {still}"
        taken = {name: port for name, port in self.ports.items() if port_taken(port)}
        assert not taken, f"ports still taken: {taken}"


def distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(scope="module")
def stack_env() -> Iterator[StackEnv]:
    state_dir = Path(tempfile.mkdtemp(prefix="qf-stack-", dir="/tmp"))
    pg, temporal, ui, emulator = distinct_free_ports(4)
    ports = {"postgres": pg, "temporal": temporal, "temporal_ui": ui, "emulator": emulator}
    env = {k: v for k, v in os.environ.items() if not k.startswith("QF_")}
    env |= {
        "QF_STATE_DIR": str(state_dir),
        "QF_PG_PORT": str(pg),
        "QF_TEMPORAL_PORT": str(temporal),
        "QF_TEMPORAL_UI_PORT": str(ui),
        "QF_KUBE_EMULATOR_PORT": str(emulator),
    }
    stack = StackEnv(state_dir, ports, env)
    yield stack
    stack.run("down")
    # As root the data folder lives outside the state folder (see devstack.postgres).
    location = state_dir / "postgres" / "DATA_LOCATION"
    if location.exists():
        shutil.rmtree(Path(location.read_text().strip()).parent, ignore_errors=True)
    shutil.rmtree(state_dir, ignore_errors=True)


def test_up_detach_status_up_again_and_down_leave_nothing_running(stack_env: StackEnv) -> None:
    up = stack_env.run("up", "--detach", "--json")
    assert up.returncode == 0, up.stderr
    shown = json.loads(up.stdout)
    assert shown["running"] is True
    assert shown["status"] == "ready"
    rows = {row["piece"]: row for row in shown["pieces"]}
    assert {r["state"] for r in rows.values()} == {"running"}
    ports = stack_env.ports
    assert rows["PostgreSQL"]["port"] == ports["postgres"]
    assert rows["PostgreSQL"]["address"].endswith(f"@127.0.0.1:{ports['postgres']}/quotaflow")
    assert rows["Temporal dev server"]["address"] == f"127.0.0.1:{ports['temporal']}"
    assert rows["Temporal Web UI"]["address"] == f"http://127.0.0.1:{ports['temporal_ui']}"
    assert rows["Kubernetes emulator"]["address"] == f"http://127.0.0.1:{ports['emulator']}"
    assert rows["Worker"]["pid"] is not None
    processes = stack_env.processes()
    assert set(processes) == {"supervisor", "postgres", "temporal", "emulator", "worker"}
    assert all(p.alive() for p in processes.values())
    assert all(port_taken(port) for port in ports.values())

    status = stack_env.status()
    assert status["running"] is True
    assert status["supervisor_pid"] == processes["supervisor"].pid

    again = stack_env.run("up", "--detach")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert stack_env.processes() == processes

    down = stack_env.run("down")
    assert down.returncode == 0, down.stderr
    assert f"stopped the stack (supervisor pid {processes['supervisor'].pid})" in down.stdout
    stack_env.assert_nothing_runs(processes)
    assert stack_env.status()["running"] is False

    nothing = stack_env.run("down")
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing was running" in nothing.stdout


@pytest.mark.parametrize(
    ("taken", "setting", "extra_env"),
    [
        ("postgres", "QF_PG_PORT", {}),
        ("temporal_ui", "QF_TEMPORAL_UI_PORT", {"QF_TEMPORAL_HEADLESS": "false"}),
    ],
)
def test_a_taken_port_is_named_and_nothing_starts(
    stack_env: StackEnv, taken: str, setting: str, extra_env: dict[str, str]
) -> None:
    port = stack_env.ports[taken]
    with socket.socket() as sock:
        # The previous test's PostgreSQL closed its clients' connections on this port: they sit
        # in TIME_WAIT, and a plain bind would fail. SO_REUSEADDR ignores those (as the stack's
        # own check does) but not a listener, so the port is still "taken" for the stack.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        up = stack_env.run("up", "--detach", **extra_env)
    assert up.returncode == 1
    lines = up.stderr.strip().splitlines()
    assert len(lines) == 1, up.stderr
    assert lines[0].startswith(f"error: stack: port {port} (")
    assert setting in lines[0]
    assert "nothing was started" in lines[0]
    state = stack_env.state()
    assert state is not None
    assert state["status"] == "failed"
    assert state["pieces"] == {}
    assert not Lease(state["supervisor_pid"], state["supervisor_started"]).alive()
    stack_env.assert_nothing_runs({})


def test_foreground_up_stops_everything_on_ctrl_c(stack_env: StackEnv) -> None:
    with open(stack_env.state_dir / "foreground.out", "w+") as out:
        # A session of its own, so the Ctrl-C below reaches what a terminal's would.
        up = subprocess.Popen(
            [sys.executable, "starter.py", "up"],
            cwd=REPO,
            env={**stack_env.env, "QF_TEMPORAL_HEADLESS": "true"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            ready = wait_for(
                lambda: (
                    (stack_env.state() or {}).get("status") == "ready"
                    and (stack_env.state() or {}).get("supervisor_pid") == up.pid
                ),
                COMMAND_SECONDS,
            )
            assert ready, (stack_env.state_dir / "foreground.out").read_text()
            processes = stack_env.processes()
            os.killpg(up.pid, signal.SIGINT)
            assert up.wait(60) == 0
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
        out.seek(0)
        assert "the stack is stopped" in out.read()
    stack_env.assert_nothing_runs(processes)


def test_a_killed_supervisor_is_cleaned_up_by_down(stack_env: StackEnv) -> None:
    up = stack_env.run("up", "--detach", QF_TEMPORAL_HEADLESS="true")
    assert up.returncode == 0, up.stderr
    processes = stack_env.processes()
    os.kill(processes["supervisor"].pid, signal.SIGKILL)
    assert wait_for(lambda: not processes["supervisor"].alive(), 10)

    status = stack_env.status()
    assert status["running"] is False
    assert status["status"] == "stale"

    down = stack_env.run("down")
    assert down.returncode == 0, down.stderr
    assert "no supervisor was running; stopped what was left" in down.stdout
    for piece in ("Worker", "Kubernetes emulator", "Temporal dev server"):
        assert piece in down.stdout
    stack_env.assert_nothing_runs(processes)
    assert stack_env.state() is None


def test_dsns_lose_their_password() -> None:
    assert redact_dsn("postgresql://qf:s3cret@db:5432/quotaflow") == (
        "postgresql://qf:***@db:5432/quotaflow"
    )
    assert redact_dsn("postgresql://db/quotaflow?password=s3cret&sslmode=require") == (
        "postgresql://db/quotaflow?password=***&sslmode=require"
    )
    assert redact_dsn("host=db password='s 3' dbname=q") == "host=db password=*** dbname=q"
    assert redact_dsn("postgresql://postgres@127.0.0.1:55432/quotaflow") == (
        "postgresql://postgres@127.0.0.1:55432/quotaflow"
    )


# --- docker compose ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return result


def test_compose_runs_every_piece_from_the_right_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-ui",
        "quotaflow-setup",
        "emulator",
        "worker",
    }
    assert services["postgres"]["image"].startswith("postgres:${POSTGRES_VERSION:-18}")
    assert services["temporal-schema"]["image"].startswith("temporalio/admin-tools:")
    assert services["temporal"]["image"].startswith("temporalio/server:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    for name in ("quotaflow-setup", "emulator", "worker"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
        assert services[name]["image"] == "quotaflow:dev"
    # 18+ images keep their data in a versioned folder below this one.
    assert any(v.endswith(":/var/lib/postgresql") for v in services["postgres"]["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), source


def test_compose_wires_the_worker_to_the_other_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker = services["worker"]["environment"]
    setup = services["quotaflow-setup"]["environment"]
    assert worker["QF_DATABASE_URL"] == setup["QF_DATABASE_URL"]
    assert worker["QF_DATABASE_URL"].startswith("postgresql://quotaflow:")
    assert worker["QF_DATABASE_URL"].endswith("@postgres:5432/quotaflow")
    assert worker["QF_TEMPORAL_ADDRESS"] == setup["QF_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert worker["QF_KUBE_MODE"] == "emulator"
    emulator_command = services["emulator"]["command"]
    port = emulator_command[emulator_command.index("--port") + 1]
    assert worker["QF_KUBE_URL"] == f"http://emulator:{port}"
    temporal = services["temporal"]["environment"]
    assert (temporal["DB"], temporal["POSTGRES_SEEDS"]) == ("postgres12", "postgres")


def test_compose_starts_things_in_order(compose: dict[str, Any]) -> None:
    def after(service: str) -> dict[str, str]:
        depends = compose["services"][service]["depends_on"]
        return {name: spec["condition"] for name, spec in depends.items()}

    assert after("temporal-schema") == {"postgres": "service_healthy"}
    assert after("temporal") == {"temporal-schema": "service_completed_successfully"}
    assert after("temporal-ui") == {"temporal": "service_healthy"}
    assert after("quotaflow-setup") == {
        "postgres": "service_healthy",
        "temporal": "service_healthy",
    }
    assert after("worker") == {
        "quotaflow-setup": "service_completed_successfully",
        "emulator": "service_healthy",
    }
    for service in ("postgres", "temporal", "emulator"):
        assert "healthcheck" in compose["services"][service]


def test_compose_setup_job_creates_our_search_attributes_and_migrates() -> None:
    script = (REPO / "deploy/compose/quotaflow-setup.sh").read_text()
    # The list is read from workflows.shared at run time, never copied into the script.
    assert "from workflows.shared import SEARCH_ATTRIBUTES" in script
    assert not any(name in script for name in SEARCH_ATTRIBUTES)
    assert "temporal operator search-attribute create" in script
    assert "python starter.py db migrate" in script
    init = (REPO / "deploy/compose/postgres-init.sh").read_text()
    assert "CREATE DATABASE quotaflow OWNER quotaflow" in init


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client")
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if version.returncode != 0:
        pytest.skip("docker compose is not installed")
    done = subprocess.run(
        [docker, "compose", "-f", str(REPO / "docker-compose.yml"), "config", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_operations_doc_lists_every_setting() -> None:
    doc = (REPO / "docs/en/operations.md").read_text()
    names = [f"QF_{name.upper()}" for name in Settings.model_fields]
    assert [name for name in names if f"`{name}`" not in doc] == []
