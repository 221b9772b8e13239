"""Activities of a pool's dispatcher: claim, tell the admitted jobs, reconcile, look ahead."""

from __future__ import annotations

from uuid import UUID

from temporalio import activity

from activities.base import ActivityBase, translated
from activities.signals import gather_bounded, tell_admitted
from observability import metrics
from workflows.shared import (
    ClaimInput,
    ClaimOutput,
    DispatcherInput,
    JobRef,
    NotifyAdmitted,
    PreemptionCheck,
    ReconcileInput,
)


class DispatchActivities(ActivityBase):
    @activity.defn(name="claim_jobs")
    @translated
    def claim_jobs(self, input: ClaimInput) -> ClaimOutput:
        result = self.store.queue.claim(input.pool, input.limit, actor=input.actor)
        metrics.observe_admissions(self.store, result.admitted, via="claim")
        return ClaimOutput(admitted=result.admitted, blocked=result.blocked)

    @activity.defn(name="notify_admitted")
    @translated
    async def notify_admitted(self, input: NotifyAdmitted) -> int:
        """Signal-with-start each admitted job's workflow (a job without one gets adopted)."""
        attempts = await self.blocking(self._attempts, input.job_ids)
        await gather_bounded(
            [
                tell_admitted(self.client, self.settings, job_id, attempt)
                for job_id, attempt in attempts
            ]
        )
        return len(attempts)

    def _attempts(self, job_ids: list[UUID]) -> list[tuple[UUID, int]]:
        return [(job_id, self.store.queue.get(job_id).attempt) for job_id in job_ids]

    @activity.defn(name="reconcile_admitted")
    @translated
    async def reconcile_admitted(self, input: ReconcileInput) -> int:
        """Tell again the admitted jobs that have had no pod for a while (lost notifications)."""
        stale = await self.blocking(
            self.store.queue.admitted_without_pod, input.pool, input.older_than_seconds
        )
        if stale:
            activity.logger.info("re-notifying %d admitted job(s) of %s", len(stale), input.pool)
            await self.notify_admitted(NotifyAdmitted(job_ids=stale))
        return len(stale)

    @activity.defn(name="dispatcher_settings")
    @translated
    def dispatcher_settings(self, input: DispatcherInput) -> DispatcherInput:
        """The dispatcher's knobs as this worker's settings have them (pool and state kept)."""
        settings = self.settings
        return input.model_copy(
            update={
                "workflow_id_prefix": settings.workflow_id_prefix,
                "batch_size": settings.claim_batch_size,
                "idle_seconds": settings.dispatcher_idle_seconds,
                "reconcile_after_seconds": settings.reconcile_after_seconds,
                "preemption_retry_seconds": settings.preemption_retry_seconds,
                "eviction_deadline_seconds": settings.eviction_deadline_seconds,
                "eviction_grace_seconds": settings.eviction_grace_seconds,
            }
        )

    @activity.defn(name="check_preemption")
    @translated
    def check_preemption(self, ref: JobRef) -> PreemptionCheck:
        """Would a preemption for this blocked job find victims now? (changes nothing)"""
        result = self.store.preemption.explain(ref.job_id)
        return PreemptionCheck(
            job_id=ref.job_id, worth_trying=result.outcome == "reserved", reason=result.reason
        )
