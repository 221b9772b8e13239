"""Cancel at each stage of a job's life."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from domain.errors import NotFound
from tests.db.helpers import assert_counters_consistent
from tests.stack import Stack
from workflows.client import cancel_job
from workflows.shared import CancelRequest, JobView


async def cancel(stack: Stack, job_id: UUID, actor: str = "alice") -> JobView:
    return await cancel_job(
        stack.client, stack.settings, job_id, CancelRequest(actor=actor, reason="test")
    )


def pod_gone(stack: Stack, name: str | None) -> bool:
    return (
        name is None
        or stack.emulator.pod(name) is None
        or bool((stack.emulator.pod(name) or {}).get("metadata", {}).get("deletionTimestamp"))
    )


async def test_cancel_pending(stack: Stack) -> None:
    blocker = await stack.submit(gpu=8, run_seconds=60)
    await stack.wait_status(blocker.job_id, "RUNNING")
    waiting = await stack.submit(gpu=1)
    await asyncio.sleep(0.5)
    assert (await cancel(stack, waiting.job_id)).status == "CANCELLED"
    done = await stack.result(waiting.job_id)
    assert done.status == "CANCELLED" and done.pod_name is None
    await cancel(stack, blocker.job_id)


async def test_cancel_admitted_while_its_pod_is_being_created(stack: Stack) -> None:
    stack.emulator.inject_fault("pods.create", delay_seconds=2.0)
    job = await stack.submit(gpu=1, run_seconds=60)
    await stack.wait_status(job.job_id, "ADMITTED")
    view = await cancel(stack, job.job_id)
    assert view.status == "CANCELLED"
    done = await stack.result(job.job_id)
    assert done.status == "CANCELLED"
    await asyncio.sleep(0.5)
    assert all(pod_gone(stack, p["metadata"]["name"]) for p in stack.emulator.pods("quotaflow"))
    assert_counters_consistent(stack.store.db)


async def test_cancel_running_deletes_the_pod(stack: Stack) -> None:
    job = await stack.submit(gpu=2, run_seconds=60)
    await stack.wait_status(job.job_id, "RUNNING")
    view = await cancel(stack, job.job_id)
    assert view.status == "CANCELLED" and view.pod_name
    assert pod_gone(stack, view.pod_name)
    assert (await stack.result(job.job_id)).status == "CANCELLED"
    with pytest.raises(NotFound):  # its workflow has ended: nothing left to cancel
        await cancel(stack, job.job_id)
    assert_counters_consistent(stack.store.db)


async def test_cancel_a_victim_during_its_preemption(stack: Stack) -> None:
    stack.world.plan(stack.world.team, 100)
    low = await stack.submit(gpu=8, priority_class="low", run_seconds=60)
    await stack.wait_status(low.job_id, "RUNNING")
    stack.emulator.inject_fault("pods.evict", delay_seconds=2.0)
    high = await stack.submit(gpu=8, priority_class="high", run_seconds=0.3)
    await stack.wait_status(low.job_id, "PREEMPTING")
    assert (await cancel(stack, low.job_id)).status == "CANCELLED"
    assert (await stack.result(high.job_id)).status == "SUCCEEDED"
    assert (await stack.result(low.job_id)).status == "CANCELLED"
    assert_counters_consistent(stack.store.db)
