"""``starter.py demo`` end to end: twice in a row on one embedded stack (free ports, a temporary
state folder under /tmp, headless Temporal), then ``down`` leaves nothing running. Plus the
demo's own arithmetic (the fewest victims, the plan window in force now)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devstack.demo import FILLERS, URGENT, fewest_victims, window_around
from domain.weekwindow import second_of_week
from settings import Settings
from tests.devstack.test_stack import StackEnv, distinct_free_ports

REPO = Path(__file__).resolve().parents[2]
# Generous: the machine is shared, and the first run also starts the whole stack.
DEMO_SECONDS = 420


class DemoEnv(StackEnv):
    """test_stack's state folder and ports, with the demo's longer runs."""

    def demo(self) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "starter.py", "demo", "--json", "--headless"],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=DEMO_SECONDS,
            check=False,
        )
        # The story's progress goes to stderr: it is what explains a failure.
        assert done.returncode == 0, f"{done.stderr}\n{done.stdout[-3000:]}"
        report: dict[str, Any] = json.loads(done.stdout)
        return report


@pytest.fixture(scope="module")
def demo_env() -> Iterator[DemoEnv]:
    state_dir = Path(tempfile.mkdtemp(prefix="qf-demo-", dir="/tmp"))
    pg, temporal, ui, emulator = distinct_free_ports(4)
    # Headless Temporal: the UI port is set (the stack checks it) but never bound.
    ports = {"postgres": pg, "temporal": temporal, "emulator": emulator}
    env = {k: v for k, v in os.environ.items() if not k.startswith("QF_")}
    env |= {
        "QF_STATE_DIR": str(state_dir),
        "QF_PG_PORT": str(pg),
        "QF_TEMPORAL_PORT": str(temporal),
        "QF_TEMPORAL_UI_PORT": str(ui),
        "QF_KUBE_EMULATOR_PORT": str(emulator),
        "QF_TEMPORAL_HEADLESS": "true",
    }
    demo = DemoEnv(state_dir, ports, env)
    yield demo
    demo.run("down")
    # As root the data folder lives outside the state folder (see devstack.postgres).
    location = state_dir / "postgres" / "DATA_LOCATION"
    if location.exists():
        shutil.rmtree(Path(location.read_text().strip()).parent, ignore_errors=True)
    shutil.rmtree(state_dir, ignore_errors=True)


def assert_story_held(report: dict[str, Any]) -> None:
    assert report["ok"] is True, report["reason"]
    assert report["reason"] is None
    failed = [c for c in report["checks"] if not c["ok"]]
    assert not failed, failed
    assert len(report["checks"]) == 8
    jobs = {job["name"]: job for job in report["jobs"]}
    assert set(jobs) == {spec.name for spec in [*FILLERS, URGENT]}
    assert {job["status"] for job in jobs.values()} == {"SUCCEEDED"}
    saga = report["preemption"]
    assert saga["preemptor"] == URGENT.name
    assert saga["status"] == "COMPLETED"
    # 4 GPUs needed from 2-GPU jobs: two victims, and those are the fewest possible.
    assert saga["need_gpu"] == URGENT.gpu
    assert len(saga["victims"]) == saga["fewest_possible"] == 2
    assert sorted(saga["victims"] + saga["spared"]) == sorted(s.name for s in FILLERS)
    for spec in FILLERS:
        victim = spec.name in saga["victims"]
        assert jobs[spec.name]["attempt"] == (1 if victim else 0)
        assert jobs[spec.name]["preempted_by"] == (URGENT.name if victim else None)
    assert jobs[URGENT.name]["attempt"] == 0
    config = report["config"]
    assert config["project"] == "demo/nlp"
    assert len({config["base"], config["commit"], config["revert"]}) == 3
    assert report["visibility_query"] == (
        "WorkflowType = 'JobWorkflow' AND QfProject STARTS_WITH 'demo/'"
    )
    assert report["stack"]["stop"] == "python starter.py down"


@pytest.mark.slow
@pytest.mark.timeout(3 * DEMO_SECONDS)
def test_demo_twice_on_one_stack_then_down_leaves_nothing_running(demo_env: DemoEnv) -> None:
    first = demo_env.demo()
    assert_story_held(first)
    assert first["stack"]["reused"] is False
    assert first["stack"]["web_ui"] is None  # headless
    assert first["web_ui_links"] == {}

    second = demo_env.demo()
    assert_story_held(second)
    assert second["stack"]["reused"] is True
    assert len(second["plans"]) == 2 and "two rows" in second["plans"][1]
    first_ids = {job["job_id"] for job in first["jobs"]}
    assert not first_ids & {job["job_id"] for job in second["jobs"]}  # new jobs each run
    assert second["config"]["base"] == first["config"]["revert"]  # reverted to the base

    processes = demo_env.processes()
    assert all(p.alive() for p in processes.values())
    down = demo_env.run("down")
    assert down.returncode == 0, down.stderr
    demo_env.assert_nothing_runs(processes)


# --- the demo's arithmetic -------------------------------------------------------------------


def candidates(*sizes: tuple[int, int]) -> list[dict[str, Any]]:
    return [{"gpu": gpu, "cpu": cpu} for gpu, cpu in sizes]


def test_fewest_victims_is_the_smallest_set_that_frees_the_need() -> None:
    # A greedy prefix in victim order (1 + 1 + 2) would take three; one 4-GPU job is enough.
    assert fewest_victims(candidates((1, 0), (1, 0), (2, 0), (4, 0)), 4, 0) == 1
    assert fewest_victims(candidates((2, 0), (2, 0), (2, 0), (2, 0)), 4, 0) == 2
    assert fewest_victims(candidates((2, 0), (2, 0)), 0, 0) == 0
    assert fewest_victims(candidates((2, 0), (2, 0)), 5, 0) is None
    # CPUs count too: the big-GPU job frees no CPU.
    assert fewest_victims(candidates((4, 0), (1, 8), (1, 8)), 4, 16) == 3
    assert fewest_victims(candidates((4, 0), (1, 8), (1, 8)), 0, 8) == 1


@pytest.mark.parametrize(
    ("zone", "now"),
    [
        ("UTC", datetime(2026, 11, 25, 12, 30, tzinfo=UTC)),  # a Wednesday
        ("Europe/Paris", datetime(2026, 11, 29, 23, 30, tzinfo=UTC)),  # Monday 00:30 in Paris
        ("America/New_York", datetime(2026, 11, 30, 3, 59, tzinfo=UTC)),  # Sunday 22:59 there
    ],
)
def test_the_plan_in_force_now_covers_the_story(zone: str, now: datetime) -> None:
    settings = Settings(timezone=zone)
    window = window_around(now, settings)
    second = second_of_week(now, settings.zone)
    assert window.contains(second)
    assert window.contains((second + 3600) % (7 * 86_400))  # the story fits well inside
