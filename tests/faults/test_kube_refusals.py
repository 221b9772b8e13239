"""Non-retryable Kubernetes answers (401/403) to *reads* of a job's pod, after the pod exists.

DESIGN §5 makes 401/403 final. Two places where that used to lose track of a pod or of a job
(found by these tests, fixed in eec9550):

* ``start_pod`` creates the pod, then polls it; a 403 on that poll ends in ``finish_job`` with
  ``launch_failed``: the job FAILED "the pod could not be created" — and the pod it did create
  ran on, deleted by nobody. The launch-failed path now deletes it.
* The job workflow's polling fallback (``_poll_state`` → ``check_pod``) is not inside any
  ``try``: a refusal escaped ``JobWorkflow.run``, the workflow *failed*, and the job stayed
  RUNNING with no workflow to finish it. ``check_pod`` now answers "no news" to a refusal.

Each fault is aimed at one pod by name, once, so nothing else is disturbed.
"""

from __future__ import annotations

import asyncio

from temporalio.client import WorkflowExecutionStatus

from k8s.pods import pod_name
from tests.faults.conftest import Experiment, Report, scaled_timeout
from tests.faults.harness import (
    observe,
    ownership_violations,
    pod_violations,
    wait_for,
    workflow_status,
)
from workflows.shared import job_workflow_id

pytestmark = scaled_timeout()


async def test_a_refused_read_after_the_pod_was_created_leaves_no_pod_running(
    lab: Experiment, report: Report
) -> None:
    spec = lab.spec(pool="main", gpu=2, run_seconds=600.0)
    lab.kube.inject_fault("pods.get", status=403, name=pod_name(spec.job_id, 0))
    [job] = await lab.submit([spec])
    await lab.finish([job], timeout=120)
    assert lab.statuses([job]) == {"FAILED": 1}  # 403 is final (DESIGN §5): the launch failed
    # ... and the pod it had created goes with it: give the deletion a few seconds to show.
    leaked = await observe(
        lambda: asyncio.to_thread(pod_violations, lab.kube.url, lab.db),
        lambda found: not found,
        seconds=10,
    )
    report.add(leaked=leaked)
    assert leaked == []
    await lab.check([job], report)


async def test_a_refused_poll_of_a_running_pod_does_not_orphan_the_job(
    lab: Experiment, report: Report
) -> None:
    spec = lab.spec(pool="main", gpu=2, run_seconds=600.0)
    [job] = await lab.submit([spec])
    await lab.wait_all([job], "RUNNING")
    # The next read of this pod is the workflow's own poll (every job_poll_seconds).
    lab.kube.inject_fault("pods.get", status=403, name=pod_name(job, 0))
    await wait_for(
        lambda: not lab.kube.pending_faults(),
        timeout=4 * lab.settings.job_poll_seconds + 30,
        what="the workflow to poll its pod",
    )
    # The refusal reaches the workflow within a workflow task; give it plenty.
    workflow_id = job_workflow_id(job, lab.settings.workflow_id_prefix)
    status = await observe(
        lambda: workflow_status(lab.client, workflow_id),
        lambda seen: seen != WorkflowExecutionStatus.RUNNING,
        seconds=10,
    )
    orphans = await ownership_violations(lab.src)
    report.add(workflow=status.name if status else None, orphans=orphans)
    assert status == WorkflowExecutionStatus.RUNNING, orphans
    await lab.end_workloads([job], timeout=120)
    await lab.check([job], report)
