"""PreemptionWorkflow (``preempt-<job id>``): the saga of DESIGN §5.

reserve the victims (one transaction; their capacity is held for the preemptor from then on) →
tell them → evict each through the Eviction API (429/5xx retried with backoff until the
deadline, 403 not) → wait until each pod is gone → requeue each victim → admit the preemptor
(one transaction). If anything fails, times out or the saga is cancelled: compensate — victims
not evicted return to what they were, evicted ones are requeued, the holds are released, the
preemptor stays PENDING with the reason. A victim is never evicted twice (its eviction is one
activity, retried only on errors that mean "not evicted") and never left PREEMPTING.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Literal
from uuid import UUID

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.preemption import PreemptionActivities
    from workflows.shared import (
        CompensateInput,
        EvictInput,
        PreemptionInput,
        PreemptionResult,
        SagaNotice,
        SagaNotify,
        Victim,
        VictimGoneInput,
    )

NoticeKind = Literal["preempting", "requeued", "restored"]
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)
DB_TIMEOUT = timedelta(seconds=30)
# 429 (a disruption budget says no) and 5xx are retried with this backoff until the deadline.
EVICTION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    non_retryable_error_types=["KubeForbidden", "PermissionDenied", "KubeApiError"],
)


def describe_failure(err: BaseException) -> str:
    if isinstance(err, asyncio.CancelledError):
        return "the saga was cancelled"
    if isinstance(err, TimeoutError):
        return "evictions did not finish before the deadline"
    cause: BaseException | None = err
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}"
    return str(cause or err)


@workflow.defn(name="PreemptionWorkflow")
class PreemptionWorkflow:
    @workflow.init
    def __init__(self, input: PreemptionInput) -> None:
        self._input = input
        self._phase = "reserving"
        self._victims: list[Victim] = []
        self._evicted: list[UUID] = []
        self._requeued: list[UUID] = []

    @workflow.query
    def describe(self) -> PreemptionResult:
        return PreemptionResult(
            job_id=self._input.job_id,
            outcome="not_started"
            if self._phase == "reserving"
            else "compensated"
            if self._phase == "compensated"
            else "completed",
            reason=self._phase,
            victims=[v.job_id for v in self._victims],
            evicted=list(self._evicted),
        )

    @workflow.run
    async def run(self, input: PreemptionInput) -> PreemptionResult:
        reserved = await workflow.execute_activity_method(
            PreemptionActivities.reserve_victims,
            input,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        if reserved.outcome != "reserved":
            self._phase = "not_started"
            return PreemptionResult(
                job_id=input.job_id, outcome="not_started", reason=reserved.reason
            )
        self._victims = reserved.victims
        self._phase = "evicting"
        try:
            await self._notify([v.job_id for v in self._victims], "preempting")
            tasks = [asyncio.create_task(self._evict(v)) for v in self._victims]
            try:
                await asyncio.wait_for(asyncio.gather(*tasks), timeout=input.deadline_seconds)
            except BaseException:
                for task in tasks:
                    task.cancel()
                # Let every eviction settle before compensating, so nothing runs behind it.
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            self._phase = "admitting"
            await workflow.execute_activity_method(
                PreemptionActivities.admit_preemptor,
                input,
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=EVICTION_RETRY,
            )
            self._phase = "completed"
            return PreemptionResult(
                job_id=input.job_id,
                outcome="completed",
                reason=reserved.reason,
                victims=[v.job_id for v in self._victims],
                evicted=list(self._evicted),
            )
        except BaseException as err:
            reason = describe_failure(err)
            self._phase = "compensating"
            undone = await workflow.execute_activity_method(
                PreemptionActivities.compensate,
                CompensateInput(
                    preemptor_id=input.job_id,
                    reason=reason,
                    evicted=list(self._evicted),
                    actor=input.actor,
                ),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            await self._notify(undone.restored, "restored")
            await self._notify(undone.requeued, "requeued")
            self._phase = "compensated"
            if isinstance(err, asyncio.CancelledError):
                raise
            return PreemptionResult(
                job_id=input.job_id,
                outcome="compensated",
                reason=reason,
                victims=[v.job_id for v in self._victims],
                evicted=list(self._evicted),
            )

    async def _evict(self, victim: Victim) -> None:
        if victim.pod_name:  # an ADMITTED victim may have no pod: nothing to evict
            eviction = EvictInput(
                job_id=victim.job_id,
                pod_name=victim.pod_name,
                grace_seconds=self._input.grace_seconds,
            )
            await workflow.execute_activity_method(
                PreemptionActivities.evict_pod,
                eviction,
                start_to_close_timeout=timedelta(seconds=20),
                schedule_to_close_timeout=timedelta(seconds=self._input.deadline_seconds),
                retry_policy=EVICTION_RETRY,
            )
            self._evicted.append(victim.job_id)
            await workflow.execute_activity_method(
                PreemptionActivities.wait_pod_gone,
                eviction,
                start_to_close_timeout=timedelta(seconds=self._input.deadline_seconds),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=DB_RETRY,
            )
        await workflow.execute_activity_method(
            PreemptionActivities.victim_gone,
            VictimGoneInput(
                victim_id=victim.job_id, preemptor_id=self._input.job_id, actor=self._input.actor
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._requeued.append(victim.job_id)
        await self._notify([victim.job_id], "requeued")

    async def _notify(self, job_ids: list[UUID], kind: NoticeKind) -> None:
        if not job_ids:
            return
        await workflow.execute_activity_method(
            PreemptionActivities.notify_jobs,
            SagaNotify(
                job_ids=job_ids, notice=SagaNotice(kind=kind, preemptor_id=self._input.job_id)
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
