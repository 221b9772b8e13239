"""A job's whole life on real Temporal, PostgreSQL and the Kubernetes emulator."""

from __future__ import annotations

from domain.models import JobStatus
from tests.stack import Stack


async def test_submit_admit_run_succeed(stack: Stack) -> None:
    view = await stack.submit(gpu=2, run_seconds=0.3)
    assert view.status == "PENDING" and view.project_path == "org/team"
    done = await stack.result(view.job_id)
    assert done.status == "SUCCEEDED"
    events = stack.store.queue.events(view.job_id)
    assert [e.to_status for e in events] == [
        JobStatus.PENDING,
        JobStatus.ADMITTED,
        JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
    ]
