"""A worker that dies between creating a job's pod and recording its name must not leave a pod
that quotaflow no longer knows about ("ghost pod"). Found by these tests, fixed in eec9550.

``start_pod`` (activities/jobs.py, ``_launch``) creates the pod, then writes ``jobs.pod_name``
in the same transaction. A crash in between rolls the write back: the job is ADMITTED with no
``pod_name`` while its pod runs, until ``start_pod`` is retried (its 30 s heartbeat timeout).
Before the fix, a cancel deleted nothing then, and a preemption saga took the job as an
ADMITTED victim "with no pod, nothing to evict" and admitted the preemptor next to the ghost:
8 GPUs of pods on a 4-GPU pool. Pod names are deterministic (job, attempt), so both now act on
that name. The delay fault on ``pods.create`` (the server creates the pod, then answers late)
holds the worker inside the window, so the SIGKILL lands there every time.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from k8s.pods import pod_name
from tests.faults.conftest import SAGA_POOL_GPUS, Experiment, Report, scaled_timeout
from tests.faults.harness import rows, wait_for
from workflows.client import cancel_job
from workflows.shared import CancelRequest

pytestmark = scaled_timeout()

POOL = "saga-a"


def live_pod(lab: Experiment, name: str) -> bool:
    """The pod exists, is not terminating and has not ended: it holds its GPUs."""
    pods = {p["name"]: p for p in lab.kube.state()["pods"]}
    pod = pods.get(name)
    return pod is not None and not pod["terminating"] and pod["phase"] in ("Pending", "Running")


async def admitted_with_a_ghost(lab: Experiment) -> UUID:
    """A low-priority job filling the pool, ADMITTED, its pod running, its pod name unknown."""
    # The next pod creation is carried out at once but answered 30 s late (the worker's client
    # gives up after 5 s): the worker sits inside _launch with the pod already created.
    lab.kube.inject_fault("pods.create", delay_seconds=30.0)
    [job] = await lab.submit(
        [lab.spec(pool=POOL, gpu=SAGA_POOL_GPUS, priority_class="low", run_seconds=600.0)]
    )
    ghost = pod_name(job, 0)
    await wait_for(lambda: live_pod(lab, ghost), timeout=60, what="the pod to exist", interval=0.05)
    lab.worker.kill()
    await lab.worker.start_ready()
    [row] = rows(lab.db, "SELECT status::text AS s, pod_name FROM jobs WHERE id = %s", (job,))
    assert (row["s"], row["pod_name"]) == ("ADMITTED", None), row
    return job


async def test_a_pod_created_just_before_a_crash_is_evicted_when_its_job_is_preempted(
    lab: Experiment, report: Report
) -> None:
    low = await admitted_with_a_ghost(lab)
    [high] = await lab.submit(
        [lab.spec(pool=POOL, gpu=SAGA_POOL_GPUS, priority_class="high", run_seconds=600.0)]
    )
    await lab.wait_all([high], "RUNNING", timeout=120)
    # The saga took `low` (requeued: attempt 1) and gave its GPUs to `high`; the pod of `low`'s
    # first attempt must be gone or going, or the pool runs 2 × its GPUs.
    report.add(
        ghost_alive_next_to_preemptor=live_pod(lab, pod_name(low, 0)),
        low=lab.statuses([low]),
    )
    assert not live_pod(lab, pod_name(low, 0)), "the victim's pod still runs"
    await lab.end_workloads([low, high], timeout=120)
    await lab.check([low, high], report)


async def test_a_pod_created_just_before_a_crash_is_deleted_when_its_job_is_cancelled(
    lab: Experiment, report: Report
) -> None:
    job = await admitted_with_a_ghost(lab)
    view = await cancel_job(
        lab.client, lab.settings, job, CancelRequest(actor="alice", reason="not needed")
    )
    assert view.status == "CANCELLED"
    # The cancel deletes the pod (grace 0 here): give the deletion a moment to show.
    await asyncio.sleep(2.0)
    report.add(ghost_alive_after_cancel=live_pod(lab, pod_name(job, 0)))
    assert not live_pod(lab, pod_name(job, 0)), "the cancelled job's pod still runs"
    await lab.check([job], report)
