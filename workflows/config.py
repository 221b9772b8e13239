"""ConfigCommitWorkflow (``config-<project>-<request id>``): one configuration change.

Commit (content-addressed, compare-and-swap on the head), tag or revert, checked against RBAC
(admin of the project) — so every configuration change is in Temporal's history too, with who
asked for it. The request id makes a retried request the same workflow (and the activity is
idempotent across its own retries).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.configs import ConfigActivities
    from workflows.shared import ConfigRequest, ConfigResult


@workflow.defn(name="ConfigCommitWorkflow")
class ConfigCommitWorkflow:
    @workflow.run
    async def run(self, request: ConfigRequest) -> ConfigResult:
        return await workflow.execute_activity_method(
            ConfigActivities.apply_config,
            request,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=200),
                maximum_interval=timedelta(seconds=10),
                maximum_attempts=20,
            ),
        )
