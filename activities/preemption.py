"""Activities of the preemption saga: reserve, evict, wait, requeue, admit, compensate."""

from __future__ import annotations

import time
from uuid import UUID

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.base import ActivityBase, translated
from activities.jobs import job_view
from activities.signals import gather_bounded, signal_job, tell_admitted, wake_dispatcher
from domain.models import JobStatus
from k8s.errors import EvictionBlocked, KubeForbidden
from k8s.pods import pod_name
from observability import metrics
from workflows.shared import (
    CompensateInput,
    CompensateOutput,
    EvictInput,
    JobView,
    PreemptionInput,
    ReserveOutput,
    SagaNotify,
    Victim,
    VictimGoneInput,
)

GONE_POLL_SECONDS = 0.2


class PreemptionActivities(ActivityBase):
    @activity.defn(name="reserve_victims")
    @translated
    def reserve_victims(self, input: PreemptionInput) -> ReserveOutput:
        """Choose and reserve the victims (PREEMPTING), holding the capacity for the preemptor.

        Idempotent: a retry after the commit finds the saga already under way and returns its
        victims again.
        """
        result = self.store.preemption.reserve(input.job_id, actor=input.actor)
        if result.outcome == "reserved":
            # A victim taken while ADMITTED may have a pod whose name a crash kept from being
            # recorded: its name is known (job, attempt), so it is evicted too (404 if none).
            victims = [
                Victim(
                    job_id=v.id,
                    pod_name=v.pod_name or pod_name(v.id, v.attempt),
                    taken_from=v.taken_from.value,
                )
                for v in result.victims
            ]
            return ReserveOutput(outcome="reserved", reason=result.reason, victims=victims)
        active = next(
            (p for p in self.store.preemption.for_job(input.job_id) if p["status"] == "ACTIVE"),
            None,
        )
        if active is not None:  # reserved by an earlier try of this very activity
            victims = []
            for victim_id in active["victims"]:
                job = self.store.queue.get(victim_id)
                victims.append(
                    Victim(
                        job_id=job.id,
                        pod_name=job.pod_name or pod_name(job.id, job.attempt),
                        taken_from=(job.preempted_from or job.status).value,
                    )
                )
            return ReserveOutput(outcome="reserved", reason="already reserved", victims=victims)
        metrics.observe_saga_not_started()
        return ReserveOutput(outcome=result.outcome, reason=result.reason)

    @activity.defn(name="notify_jobs")
    @translated
    async def notify_jobs(self, input: SagaNotify) -> None:
        await gather_bounded(
            [
                signal_job(self.client, self.settings, job_id, "saga", input.notice)
                for job_id in input.job_ids
            ]
        )

    @activity.defn(name="evict_pod")
    @metrics.counts_evictions
    @translated
    def evict_pod(self, input: EvictInput) -> str:
        """One eviction request through the Eviction API (policy/v1).

        201 → evicted; 404 → already gone (success). 429 (a PodDisruptionBudget says no), 5xx and
        timeouts raise retryable errors: the saga's retry policy backs off until its deadline.
        401/403 are not retryable: the saga compensates.
        """
        try:
            result = self.kube.evict_pod(input.pod_name, input.grace_seconds)
        except EvictionBlocked as exc:
            # Retryable, with a type the retry policy and the history make obvious.
            raise ApplicationError(str(exc), type="EvictionBlocked") from exc
        except KubeForbidden as exc:
            raise ApplicationError(str(exc), type="KubeForbidden", non_retryable=True) from exc
        return result.outcome

    @activity.defn(name="wait_pod_gone")
    @translated
    def wait_pod_gone(self, input: EvictInput) -> None:
        """Return once the pod no longer exists (its grace period over), heartbeating."""
        while self.kube.get_pod(input.pod_name) is not None:
            activity.heartbeat()
            if activity.is_cancelled():
                raise CancelledError("wait_pod_gone cancelled")
            time.sleep(GONE_POLL_SECONDS)

    @activity.defn(name="victim_gone")
    @translated
    def victim_gone(self, input: VictimGoneInput) -> str:
        """The victim's pod is gone: PREEMPTED, then back in the queue. Idempotent."""
        return self.store.preemption.victim_gone(
            input.victim_id, input.preemptor_id, actor=input.actor
        )

    @activity.defn(name="admit_preemptor")
    @translated
    async def admit_preemptor(self, input: PreemptionInput) -> JobView:
        """Give back the hold and admit the preemptor in one transaction, then tell it."""
        job = await self.blocking(self.store.preemption.complete, input.job_id, actor=input.actor)
        await self.blocking(metrics.observe_preemptor_admitted, self.store, job.id)
        await tell_admitted(self.client, self.settings, job.id, job.attempt)
        await wake_dispatcher(self.client, self.settings, job.pool, "preemption done")
        return job_view(await self.blocking(self.store.queue.view, job.id))

    @activity.defn(name="compensate")
    @translated
    async def compensate(self, input: CompensateInput) -> CompensateOutput:
        """Undo the saga: victims not evicted back to what they were, evicted ones requeued.

        A victim whose eviction we are not sure of (the call timed out after the server took
        it) is looked up first: a pod that is gone or terminating was evicted.
        """
        output = await self.blocking(self._compensate, input)
        pool = (await self.blocking(self.store.queue.get, input.preemptor_id)).pool
        await wake_dispatcher(self.client, self.settings, pool, "preemption undone")
        return output

    def _compensate(self, input: CompensateInput) -> CompensateOutput:
        evicted = set(input.evicted)
        for saga in self.store.preemption.for_job(input.preemptor_id):
            if saga["status"] != "ACTIVE":
                continue
            for victim_id in saga["victims"]:
                job = self.store.queue.get(victim_id)
                if victim_id in evicted or job.status != JobStatus.PREEMPTING or not job.pod_name:
                    continue
                pod = self.kube.get_pod(job.pod_name)
                if pod is None or pod.deletion_pending:
                    evicted.add(victim_id)
        outcome = self.store.preemption.compensate(
            input.preemptor_id, reason=input.reason, actor=input.actor, evicted=sorted(evicted)
        )
        metrics.observe_saga_end(self.store, input.preemptor_id)
        return CompensateOutput(
            restored=[UUID(k) for k, v in outcome.items() if v.startswith("restored")],
            requeued=[UUID(k) for k, v in outcome.items() if v in ("requeued", "already")],
        )
