"""The pod watcher: one long-running, heartbeating activity for the whole cluster.

It lists and watches quotaflow pods and signals each ending to its job's workflow. Its
checkpoint (the watch's resourceVersion) is the heartbeat detail, recorded only after every
ending before it was delivered: after a worker restart Temporal retries the activity, which
resumes from the last checkpoint — nothing is lost, and what is seen twice is dropped by the
job workflow (it remembers the endings it handled).
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.base import ActivityBase, translated
from activities.signals import signal_job
from k8s.models import PodEnding
from k8s.watcher import PodEndingWatcher
from workflows.shared import PodEndedSignal, PodWatchInput

WINDOW_SECONDS = 5.0


class PodActivities(ActivityBase):
    @activity.defn(name="watch_pods")
    @translated
    async def watch_pods(self, input: PodWatchInput) -> None:
        details = activity.info().heartbeat_details
        checkpoint = str(details[0]) if details and details[0] else input.checkpoint
        watcher = PodEndingWatcher(self.kube, checkpoint)
        activity.logger.info("pod watcher starting from %s", checkpoint or "a fresh list")
        loop = asyncio.get_running_loop()
        while True:
            if activity.is_worker_shutdown():
                # Hand the watch over at once (Temporal retries it on another worker from the
                # last checkpoint) instead of holding this worker's shutdown until the grace
                # period ends.
                raise ApplicationError("worker shutting down; the watch moves on")
            # Each ending is signalled as the watch yields it (not at the end of the window):
            # a job's GPUs are given back as soon as its pod is gone.
            endings: asyncio.Queue[PodEnding | None] = asyncio.Queue()
            window = loop.run_in_executor(self.deps.executor, _pump, watcher, loop, endings)
            while (ending := await endings.get()) is not None:
                if ending.job_id is not None:
                    await signal_job(
                        self.client,
                        self.settings,
                        ending.job_id,
                        "pod_ended",
                        PodEndedSignal(
                            pod_name=ending.pod_name,
                            uid=ending.uid,
                            attempt=ending.attempt,
                            outcome=ending.outcome,
                            message=ending.message,
                            exit_code=ending.exit_code,
                            disruption_reason=ending.disruption_reason,
                        ),
                    )
            await window  # its error, if the watch failed
            # Every ending before this checkpoint has been signalled: safe to resume from.
            activity.heartbeat(watcher.resource_version)


def _pump(
    watcher: PodEndingWatcher,
    loop: asyncio.AbstractEventLoop,
    endings: asyncio.Queue[PodEnding | None],
) -> None:
    """One watch window, on a worker thread: hand each ending to the event loop, then None."""
    try:
        for ending in watcher.stream(WINDOW_SECONDS):
            loop.call_soon_threadsafe(endings.put_nowait, ending)
    finally:
        loop.call_soon_threadsafe(endings.put_nowait, None)
