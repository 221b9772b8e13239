"""Long-lived workflows start new runs before their histories grow long, and lose nothing."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from tests.stack import Stack, eventually
from workflows.dispatcher import DispatcherWorkflow
from workflows.job import JobWorkflow
from workflows.shared import (
    JOB_REVISION,
    DispatcherInput,
    JobInput,
    JobRequest,
    WakeSignal,
    dispatcher_workflow_id,
    job_workflow_id,
)


async def runs_of(stack: Stack, workflow_id: str) -> int:
    query = f"WorkflowId = '{workflow_id}'"
    return len([w async for w in stack.client.list_workflows(query)])


async def _at_least(n: int, count: Awaitable[int]) -> bool:
    return await count >= n


async def test_dispatcher_and_job_continue_as_new(stack: Stack) -> None:
    settings = stack.settings
    prefix = settings.workflow_id_prefix
    dispatcher_id = dispatcher_workflow_id("main", prefix)
    await stack.client.get_workflow_handle(dispatcher_id).terminate("restart with short runs")
    await stack.client.start_workflow(
        DispatcherWorkflow.run,
        DispatcherInput(pool="main", workflow_id_prefix=prefix, idle_seconds=0.2, turns_per_run=3),
        id=dispatcher_id,
        task_queue=settings.task_queue,
        start_signal="wake",
        start_signal_args=[WakeSignal(reason="test")],
    )
    stack.world.plan(stack.world.team, 100)
    # A job whose workflow starts a new run after every attempt, preempted once.
    low_id = uuid.uuid4()
    request = JobRequest(
        job_id=low_id,
        project_id=stack.world.team.p_id,
        actor="alice",
        gpu=8,
        pool="main",
        priority_class="low",
        run_seconds=3,
    )
    await stack.client.execute_update_with_start_workflow(
        JobWorkflow.submit,
        request,
        start_workflow_operation=WithStartWorkflowOperation(
            JobWorkflow.run,
            JobInput(
                job_id=low_id,
                request=request,
                poll_seconds=5,
                attempts_per_run=1,
                revision=JOB_REVISION,
            ),
            id=job_workflow_id(low_id, prefix),
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        ),
    )
    await stack.wait_status(low_id, "RUNNING")
    high = await stack.submit(gpu=8, priority_class="high", run_seconds=0.3)
    assert (await stack.result(high.job_id)).status == "SUCCEEDED"
    done = await stack.result(low_id, timeout=90)  # follows the runs to the last one
    assert done.status == "SUCCEEDED"
    assert done.attempt == 1
    job_id = job_workflow_id(low_id, prefix)
    await eventually(lambda: _at_least(2, runs_of(stack, job_id)), what="two runs of the job")
    await eventually(
        lambda: _at_least(2, runs_of(stack, dispatcher_id)), what="two runs of the dispatcher"
    )
