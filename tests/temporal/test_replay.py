"""Replay tests: workflow code must stay deterministic for the histories it already wrote.

``histories/`` holds recorded histories of every workflow (a preemption story: victims, the
preemptor, the saga, the dispatcher, the pod watcher, a config commit), one set per generation
of the code: ``tbd67ecf4-*`` from before ``JobInput.revision`` (JobWorkflow revision 1), and
``tcfa1421c-*`` with revision 2. They replay on every run, so a change that would break running
workflows fails here — guard such a change with ``workflow.patched`` or a new revision. Add the
current generation with ``QF_RECORD_HISTORIES=1 pytest tests/temporal/test_replay.py``; remove
an old one only when no workflow of it can still be running anywhere.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.stack import Stack
from worker import WORKFLOWS
from workflows.client import change_config
from workflows.shared import ConfigRequest

HISTORIES = Path(__file__).parent / "histories"
EVERY_WORKFLOW = {w.__temporal_workflow_definition.name for w in WORKFLOWS}  # type: ignore[attr-defined]


def replayer() -> Replayer:
    return Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)


async def test_recorded_histories_still_replay() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    assert {f.name.split("--")[0] for f in files} == EVERY_WORKFLOW
    for file in files:
        history = WorkflowHistory.from_json(file.stem.split("--", 1)[1], file.read_text())
        await replayer().replay_workflow(history)


async def test_a_fresh_preemption_story_replays(stack: Stack) -> None:
    stack.world.plan(stack.world.team, 100)
    lows = [await stack.submit(gpu=4, priority_class="low", run_seconds=2.0) for _ in range(2)]
    for job in lows:
        await stack.wait_status(job.job_id, "RUNNING")
    high = await stack.submit(gpu=4, priority_class="high", run_seconds=0.3)
    assert (await stack.result(high.job_id)).status == "SUCCEEDED"
    for job in lows:
        assert (await stack.result(job.job_id)).status == "SUCCEEDED"
    await change_config(
        stack.client,
        stack.settings,
        ConfigRequest(
            op="commit",
            request_id=uuid.uuid4(),
            project_id=stack.world.team.p_id,
            actor="root",
            content={"defaults": {"pool": "main"}},
            message="replay test",
        ),
    )

    prefix = stack.settings.workflow_id_prefix
    histories: list[tuple[str, WorkflowHistory]] = []
    async for execution in stack.client.list_workflows(f"WorkflowId STARTS_WITH '{prefix}'"):
        handle = stack.client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        await replayer().replay_workflow(history)
        histories.append((execution.workflow_type or "", history))
    assert {kind for kind, _ in histories} == EVERY_WORKFLOW
    if os.environ.get("QF_RECORD_HISTORIES") == "1":
        for workflow_type, history in histories:
            (HISTORIES / f"{workflow_type}--{history.workflow_id}.json").write_text(
                history.to_json()
            )
