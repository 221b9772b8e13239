"""A job's whole life on real Temporal, PostgreSQL and the Kubernetes emulator."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError

from domain.models import JobStatus
from tests.stack import Stack
from workflows.shared import job_workflow_id, pod_watcher_workflow_id


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
