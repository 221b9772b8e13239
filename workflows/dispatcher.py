"""DispatcherWorkflow (``dispatcher-<pool>``): the admission loop of one pool.

A singleton per pool, started idempotently (signal-with-start from whoever needs it). Each turn
claims a batch of admissible jobs through the store (the database decides; any number of
dispatchers or workers could claim at once without harm), tells their JobWorkflows, starts a
PreemptionWorkflow for an in-quota job that the pool cannot fit, re-notifies admitted jobs
whose notification may have been lost, then sleeps until a ``wake`` signal (submit, job end,
plan change) or a timer. It continues as new before its history grows long.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from uuid import UUID

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.dispatch import DispatchActivities
    from workflows.preemption import PreemptionWorkflow
    from workflows.shared import (
        ClaimInput,
        DispatcherInput,
        DispatcherView,
        JobRef,
        NotifyAdmitted,
        PreemptionInput,
        ReconcileInput,
        WakeSignal,
        preemption_workflow_id,
    )

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)
TIMEOUT = timedelta(seconds=60)


@workflow.defn(name="DispatcherWorkflow")
class DispatcherWorkflow:
    @workflow.init
    def __init__(self, input: DispatcherInput) -> None:
        self._input = input
        self._woken = False
        self._turns = 0
        self._admitted_total = 0
        self._last_blocked: UUID | None = None
        self._preemptions_started = 0
        self._tries = dict(input.preemption_tries)
        self._last_reconcile = 0.0

    @workflow.signal
    def wake(self, signal: WakeSignal) -> None:
        self._woken = True

    @workflow.query
    def describe(self) -> DispatcherView:
        return DispatcherView(
            pool=self._input.pool,
            iterations=self._turns,
            admitted_total=self._admitted_total,
            last_blocked=self._last_blocked,
            preemptions_started=self._preemptions_started,
        )

    @workflow.run
    async def run(self, input: DispatcherInput) -> None:
        if workflow.patched("settings-from-worker"):
            # The workers' settings win over those of whoever started this dispatcher first (or
            # of the run before a continue-as-new): an operator's change reaches it at once.
            input = await workflow.execute_activity_method(
                DispatchActivities.dispatcher_settings,
                input,
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            self._input = input
        while (
            self._turns < input.turns_per_run and not workflow.info().is_continue_as_new_suggested()
        ):
            self._turns += 1
            self._woken = False
            claimed = await workflow.execute_activity_method(
                DispatchActivities.claim_jobs,
                ClaimInput(pool=input.pool, limit=input.batch_size),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            if claimed.admitted:
                self._admitted_total += len(claimed.admitted)
                await workflow.execute_activity_method(
                    DispatchActivities.notify_admitted,
                    NotifyAdmitted(job_ids=claimed.admitted),
                    start_to_close_timeout=TIMEOUT,
                    retry_policy=RETRY,
                )
            now = workflow.now().timestamp()
            if now - self._last_reconcile >= input.reconcile_after_seconds:
                self._last_reconcile = now
                await workflow.execute_activity_method(
                    DispatchActivities.reconcile_admitted,
                    ReconcileInput(
                        pool=input.pool, older_than_seconds=input.reconcile_after_seconds
                    ),
                    start_to_close_timeout=TIMEOUT,
                    retry_policy=RETRY,
                )
            if claimed.blocked is not None:
                await self._maybe_preempt(claimed.blocked)
            if len(claimed.admitted) >= input.batch_size:
                continue  # more may be waiting: claim again at once
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._woken, timeout=timedelta(seconds=input.idle_seconds)
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        now = workflow.now().timestamp()
        workflow.continue_as_new(
            input.model_copy(
                update={
                    "preemption_tries": {
                        job: at
                        for job, at in self._tries.items()
                        if now - at < input.preemption_retry_seconds
                    },
                }
            )
        )

    async def _maybe_preempt(self, job_id: UUID) -> None:
        """Start a saga for the blocked job if one could succeed and none was tried lately."""
        key = str(job_id)
        now = workflow.now().timestamp()
        self._last_blocked = job_id
        if now - self._tries.get(key, float("-inf")) < self._input.preemption_retry_seconds:
            return
        self._tries[key] = now
        check = await workflow.execute_activity_method(
            DispatchActivities.check_preemption,
            JobRef(job_id=job_id),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        if not check.worth_trying:
            return
        try:
            await workflow.start_child_workflow(
                PreemptionWorkflow.run,
                PreemptionInput(
                    job_id=check.job_id,
                    deadline_seconds=self._input.eviction_deadline_seconds,
                    grace_seconds=self._input.eviction_grace_seconds,
                ),
                id=preemption_workflow_id(check.job_id, self._input.workflow_id_prefix),
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            )
            self._preemptions_started += 1
        except WorkflowAlreadyStartedError:
            pass  # a saga for this job is already under way
