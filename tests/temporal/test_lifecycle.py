"""A job's whole life on real Temporal, PostgreSQL and the Kubernetes emulator."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError

from domain.errors import InvalidInput
from domain.models import JobStatus
from tests.stack import Stack
from workflows.client import cancel_job, submit_job
from workflows.shared import CancelRequest, JobRequest, job_workflow_id, pod_watcher_workflow_id


async def _history(stack: Stack, job_id: UUID) -> list[Any]:
    handle = stack.client.get_workflow_handle(
        job_workflow_id(job_id, stack.settings.workflow_id_prefix)
    )
    return list((await handle.fetch_history()).events)


async def _event_types(stack: Stack, job_id: UUID) -> list[int]:
    return [event.event_type for event in await _history(stack, job_id)]


async def test_submit_admit_run_succeed(stack: Stack) -> None:
    view = await stack.submit(gpu=2, run_seconds=0.3)
    # The answer is the job as it stands: the dispatcher may have admitted it already.
    assert view.status in ("PENDING", "ADMITTED") and view.project_path == "org/team"
    done = await stack.result(view.job_id)
    assert done.status == "SUCCEEDED"
    events = stack.store.queue.events(view.job_id)
    assert [e.to_status for e in events] == [
        JobStatus.PENDING,
        JobStatus.ADMITTED,
        JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
    ]
    # Revision 2's shape, which the lifecycle benchmark depends on: one upsert per status
    # (no TemporalChangeVersion upsert: no patch marker), one polling timer for the whole
    # life, and no read between `admitted` and start_pod.
    history = await _event_types(stack, view.job_id)
    assert history.count(EventType.EVENT_TYPE_MARKER_RECORDED) == 0
    assert history.count(EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES) == 4
    assert history.count(EventType.EVENT_TYPE_TIMER_STARTED) == 1
    assert history.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 3


@pytest.mark.no_pod_watcher
async def test_a_lost_pod_ending_is_found_by_the_workflows_own_poll(stack: Stack) -> None:
    # No watcher, no pod_ended signal: only the JobWorkflow's polling timer (every
    # job_poll_seconds = 5 s here) can notice that the pod ended. (The watcher is never started:
    # terminating it would leave its activity signalling until its next heartbeat, up to 16 s.)
    watcher = stack.client.get_workflow_handle(
        pod_watcher_workflow_id(stack.settings.workflow_id_prefix)
    )
    with pytest.raises(RPCError):
        await watcher.describe()
    # The pod runs long enough for start_pod to see it Running (it polls every 0.2 s): a pod
    # that ended before that is found by start_pod's own look, which is not what this tests.
    view = await stack.submit(gpu=1, run_seconds=4.0)
    done = await stack.result(view.job_id, timeout=4 * stack.settings.job_poll_seconds + 30)
    assert done.status == "SUCCEEDED"
    assert JobStatus.RUNNING in [e.to_status for e in stack.store.queue.events(view.job_id)]
    history = await _event_types(stack, view.job_id)
    assert history.count(EventType.EVENT_TYPE_TIMER_FIRED) >= 1
    signals = [
        event.workflow_execution_signaled_event_attributes.signal_name
        for event in await _history(stack, view.job_id)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert "pod_ended" not in signals


async def test_a_reused_id_for_another_job_is_refused_while_the_first_runs(stack: Stack) -> None:
    first = JobRequest(
        job_id=uuid4(),
        project_id=stack.world.team.p_id,
        actor="alice",
        gpu=1,
        pool=stack.world.pool,
        run_seconds=60.0,
    )
    await submit_job(stack.client, stack.settings, first)
    await stack.wait_status(first.job_id, "RUNNING")
    history = await _event_types(stack, first.job_id)
    for other in (
        first.model_copy(update={"gpu": 2}),
        first.model_copy(update={"cpu": 4}),
        first.model_copy(update={"project_id": stack.world.root.p_id}),
    ):
        with pytest.raises(InvalidInput, match="already exists with a different project"):
            await submit_job(stack.client, stack.settings, other)
    # The same request again (a retry) is still answered with the job, as it stands.
    again = await submit_job(stack.client, stack.settings, first.model_copy(update={"name": "x"}))
    assert (again.job_id, again.gpu, again.status) == (first.job_id, 1, "RUNNING")
    job = await asyncio.to_thread(stack.store.queue.get, first.job_id)
    assert (job.required_gpu, job.required_cpu, job.project_id) == (1, 0, first.project_id)
    # Refused updates leave nothing in the history: only the first submit and the retry are in.
    accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    assert history.count(accepted) == 1
    assert (await _event_types(stack, first.job_id)).count(accepted) == 2
    await cancel_job(stack.client, stack.settings, first.job_id, CancelRequest(actor="alice"))
