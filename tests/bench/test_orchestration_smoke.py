"""bench.orchestration end to end at toy size: it runs, cleans up, and its numbers are sane.

No timing assertions: the machine is shared and noisy, and the benchmark's own report is where
speed is judged.
"""

from __future__ import annotations

import math
from dataclasses import replace

import psutil
import pytest

from bench.orchestration import (
    DESIGN_SHAPE,
    JOB_SHAPE,
    QUICK,
    QUOTAFLOW,
    Config,
    render,
    run,
    variants,
)
from bench.orchestration_bare import BareShape

pytestmark = pytest.mark.slow

TINY = replace(QUICK, jobs=4, rounds=1, warmup_jobs=2, concurrency=4, sagas=2, saga_fillers=4)


def test_bare_shapes_spread_their_signals() -> None:
    assert JOB_SHAPE.signalling_steps() == {0, 1}
    assert DESIGN_SHAPE.signalling_steps() == {0}
    assert BareShape(activities=3, signals=0).signalling_steps() == set()


async def test_a_tiny_run_completes_with_sane_numbers() -> None:
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    lines: list[str] = []
    report = await run(TINY, lines.append)

    assert [r.variant for r in report.lifecycle] == variants()
    for result in report.lifecycle:
        assert result.jobs == TINY.jobs
        assert sum(result.statuses.values()) == TINY.jobs
        assert result.seconds > 0 and math.isfinite(result.rate) and result.rate > 0
        assert len(result.latencies) == TINY.jobs and all(x > 0 for x in result.latencies)
    assert report.rounds_of(QUOTAFLOW)[0].statuses == {"SUCCEEDED": TINY.jobs}
    assert all(r > 0 for r in report.ratios(variants()[1]))
    # The histories hold what a job's life is made of.
    profile = report.profile
    assert profile.sampled_jobs == TINY.jobs
    assert profile.per_job_events["ACTIVITY_TASK_SCHEDULED"] >= 3 * TINY.jobs
    assert profile.per_job_events["WORKFLOW_EXECUTION_SIGNALED"] >= TINY.jobs

    assert len(report.sagas) == TINY.sagas
    for saga in report.sagas:
        assert saga.victims == TINY.saga_victims
        assert 0 < saga.latency < 60
        parts = saga.recorded + saga.reserved + saga.evicted + saga.admitted
        assert parts == pytest.approx(saga.latency, abs=1e-3)

    text = render(report)
    assert "### Lifecycle throughput" in text and "### Saga latency" in text
    # Every process the run started has ended (zombies are ended: only not yet reaped).
    assert [p for p in psutil.Process().children(recursive=True) if alive(p, children_before)] == []


def alive(proc: psutil.Process, before: set[int]) -> bool:
    if proc.pid in before:
        return False
    try:
        status = proc.status()
    except psutil.NoSuchProcess:
        return False
    # The PostgreSQL reaper exits on its own once the server is down (devstack.pg_reaper).
    return status != psutil.STATUS_ZOMBIE and "pg_reaper" not in " ".join(proc.cmdline())


def test_config_defaults_meet_the_brief() -> None:
    config = Config()
    assert 200 <= config.jobs <= 400 and config.rounds >= 3 and config.sagas >= 30
    assert QUICK.sagas >= 5 and QUICK.rounds >= 3
    assert config.stack.dispatcher_idle_seconds > 0
