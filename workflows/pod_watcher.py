"""PodWatcherWorkflow (``pod-watcher``): keeps the one pod-watching activity alive.

The activity heartbeats its watch checkpoint; if its worker dies the heartbeat times out and
Temporal starts it again on another worker, from that checkpoint.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.pods import PodActivities
    from workflows.shared import PodWatchInput


@workflow.defn(name="PodWatcherWorkflow")
class PodWatcherWorkflow:
    @workflow.run
    async def run(self, input: PodWatchInput) -> None:
        await workflow.execute_activity_method(
            PodActivities.watch_pods,
            input,
            start_to_close_timeout=timedelta(days=3650),
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_interval=timedelta(seconds=10),
            ),
        )
