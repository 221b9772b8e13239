"""Activities of one job's life: record, launch the pod, finish, cancel, look at the pod."""

from __future__ import annotations

import contextlib
import time
from typing import Any
from uuid import UUID

from temporalio import activity
from temporalio.exceptions import CancelledError

from activities.base import ActivityBase, translated
from activities.signals import wake_dispatcher
from domain.errors import IllegalTransition, InvalidInput, QuotaflowError
from domain.models import JobStatus, Role, SubmitJob
from k8s.errors import KubeApiError, KubeForbidden
from k8s.models import PodRequest
from k8s.pods import pod_name
from observability import metrics
from store.queries import q
from workflows.shared import (
    CancelInput,
    FinishInput,
    JobInput,
    JobRef,
    JobView,
    PodEndedSignal,
)

POD_POLL_SECONDS = 0.2
ACTOR = "job-workflow"


def job_view(row: dict[str, Any]) -> JobView:
    return JobView(
        job_id=row["id"],
        name=row["name"],
        status=row["status"],
        status_reason=row["status_reason"],
        attempt=row["attempt"],
        pod_name=row["pod_name"],
        project_id=row["project_id"],
        project_path=row["project_names"],
        pool=row["pool"],
        priority_class=row["priority_class"],
        priority_value=row["priority_value"],
        gpu=row["required_gpu"],
        cpu=row["required_cpu"],
        submitted_by=row["submitted_by_name"],
        best_effort=row["best_effort"],
        preempted_by=row["preempted_by"],
        created_at=row["created_at"],
        admitted_at=row["admitted_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


class JobActivities(ActivityBase):
    def view(self, job_id: UUID) -> JobView:
        return job_view(self.store.queue.view(job_id))

    @activity.defn(name="record_job")
    @translated
    async def record_job(self, input: JobInput) -> JobView:
        """Record a new job (checked against RBAC), or adopt an existing one. Idempotent."""
        request = input.request
        if request is None:
            return await self.blocking(self.view, input.job_id)
        if request.job_id != input.job_id:
            raise InvalidInput("the request's job_id differs from the workflow's", field="job_id")
        view = await self.blocking(self._record, input)
        await wake_dispatcher(self.client, self.settings, view.pool, f"submitted {view.job_id}")
        return view

    def _record(self, input: JobInput) -> JobView:
        request = input.request
        assert request is not None
        actor = self.deps.authz.require(
            request.actor, request.project_id, Role.MEMBER, "submitting a job"
        )
        self.store.queue.submit(
            SubmitJob(
                id=request.job_id,
                name=request.name,
                project_id=request.project_id,
                submitted_by=actor.id,
                pool=request.pool,
                priority_class=request.priority_class,
                gpu=request.gpu,
                cpu=request.cpu,
                image=request.image,
                command=request.command,
                run_seconds=request.run_seconds,
            ),
            actor=actor.username,
        )
        return self.view(request.job_id)

    @activity.defn(name="refresh_job")
    @translated
    def refresh_job(self, ref: JobRef) -> JobView:
        return self.view(ref.job_id)

    @activity.defn(name="start_pod")
    @translated
    def start_pod(self, ref: JobRef) -> JobView:
        """Launch the pod of the job's current attempt and wait until it runs.

        The pod is created while the job's row is locked and only if the job is still ADMITTED,
        so a preemption saga or a cancel that takes the row first means no pod is created, and
        one that comes after finds the pod and evicts or deletes it. Then polls the pod
        (heartbeating) until it is Running — the job becomes RUNNING — or has already ended.
        """
        launched = self._launch(ref.job_id)
        if launched is None:
            return self.view(ref.job_id)
        name, _ = launched
        while True:
            activity.heartbeat(name)
            if activity.is_cancelled():
                raise CancelledError("start_pod cancelled")
            pod = self.kube.get_pod(name)
            if pod is None or pod.phase in ("Running", "Succeeded", "Failed"):
                break
            time.sleep(POD_POLL_SECONDS)
        if pod is not None and pod.phase == "Running":
            # Preempted or cancelled meanwhile: its new state is what counts.
            with contextlib.suppress(IllegalTransition):
                self.store.queue.transition(
                    ref.job_id,
                    JobStatus.RUNNING,
                    from_statuses=[JobStatus.ADMITTED],
                    reason=f"pod {name} running",
                    actor=ACTOR,
                )
        return self.view(ref.job_id)

    def _launch(self, job_id: UUID) -> tuple[str, int] | None:
        with self.store.db.connection() as conn:
            job = self.store.queue.lock(conn, job_id)
            if job.status != JobStatus.ADMITTED:
                return (job.pod_name, job.attempt) if job.pod_name else None
            name = pod_name(job.id, job.attempt)
            if job.pod_name == name:
                return name, job.attempt
            row = conn.execute(
                "SELECT coalesce((SELECT string_agg(a.name, '/' ORDER BY nlevel(a.path)) "
                "FROM projects a WHERE a.path @> p.path), '') AS names, u.username "
                "FROM projects p, users u WHERE p.p_id = %s AND u.id = %s",
                (job.project_id, job.submitted_by),
            ).fetchone()
            assert row is not None
            self.kube.create_job_pod(
                PodRequest(
                    job_id=job.id,
                    attempt=job.attempt,
                    project_id=job.project_id,
                    project_path=row["names"],
                    pool=job.pool,
                    priority_class=job.priority_class,
                    gpu=job.required_gpu,
                    cpu=job.required_cpu,
                    submitted_by=row["username"],
                    image=job.image,
                    command=job.command,
                    run_seconds=job.run_seconds,
                )
            )
            conn.execute(
                q("job_set_pod"), {"job_id": job.id, "attempt": job.attempt, "pod_name": name}
            )
            return name, job.attempt

    @activity.defn(name="finish_job")
    @translated
    async def finish_job(self, input: FinishInput) -> JobView:
        """The job's pod ended: SUCCEEDED or FAILED — unless the ending was an eviction."""
        view = await self.blocking(self._finish, input)
        await self._capacity_freed(view, "ended")
        return view

    async def _capacity_freed(self, view: JobView, what: str) -> None:
        """Wake the dispatcher when a job's end may let a waiting job in (not otherwise)."""
        if view.final and await self.blocking(self.store.queue.has_pending, view.pool):
            await wake_dispatcher(self.client, self.settings, view.pool, f"{view.job_id} {what}")

    def _finish(self, input: FinishInput) -> JobView:
        ending = input.ending
        job = self.store.queue.get(input.job_id)
        if job.attempt != input.attempt or job.status.final:
            return self.view(input.job_id)  # an old attempt's pod, or already done
        if input.launch_failed:
            if job.status == JobStatus.ADMITTED:
                with contextlib.suppress(IllegalTransition):  # cancelled or taken meanwhile
                    self.store.queue.transition(
                        job.id,
                        JobStatus.FAILED,
                        from_statuses=[JobStatus.ADMITTED],
                        reason=f"the pod could not be created: {ending.message}",
                        actor=ACTOR,
                    )
                    metrics.job_ended(job.pool, JobStatus.FAILED)
                # The launch may have failed after the pod was created (a refused read of
                # it): do not leave it running for a job that failed.
                self._delete_pod_quietly(pod_name(job.id, job.attempt))
            return self.view(input.job_id)
        evicted = ending.outcome == "Deleted" or ending.disruption_reason is not None
        if job.status in (JobStatus.PREEMPTED, JobStatus.PENDING) or (
            job.status == JobStatus.PREEMPTING and evicted
        ):
            return self.view(input.job_id)  # the saga owns this ending
        succeeded = ending.outcome == "Succeeded" and not evicted
        target = JobStatus.SUCCEEDED if succeeded else JobStatus.FAILED
        reason = (
            f"pod {ending.pod_name} {ending.outcome.lower()}"
            + (f" (exit {ending.exit_code})" if ending.exit_code is not None else "")
            + (f": {ending.message}" if ending.message else "")
        )
        if ending.outcome == "Deleted":
            reason = f"pod {ending.pod_name} was deleted outside quotaflow"
        try:
            with self.store.db.connection() as conn:
                if job.status == JobStatus.ADMITTED:  # ended before we saw it run
                    self.store.queue.transition(
                        job.id,
                        JobStatus.RUNNING,
                        from_statuses=[JobStatus.ADMITTED],
                        reason=f"pod {ending.pod_name} ran",
                        actor=ACTOR,
                        conn=conn,
                    )
                self.store.queue.transition(
                    job.id,
                    target,
                    from_statuses=[JobStatus.RUNNING, JobStatus.PREEMPTING],
                    reason=reason,
                    actor=ACTOR,
                    conn=conn,
                )
        except IllegalTransition:
            # Cancelled, or taken by a saga, between our read and our write: its state wins.
            return self.view(input.job_id)
        metrics.job_ended(job.pool, target)
        return self.view(input.job_id)

    def _delete_pod_quietly(self, name: str) -> None:
        try:
            self.kube.delete_pod(name, self.settings.eviction_grace_seconds)
        except QuotaflowError as exc:  # best effort: the pod may never have existed
            activity.logger.warning("could not delete pod %s: %s", name, exc)

    @activity.defn(name="cancel_job")
    @translated
    async def cancel_job(self, input: CancelInput) -> JobView:
        """Cancel (member of the project), then delete the pod if there is one. Idempotent."""
        view = await self.blocking(self._cancel, input)
        await self._capacity_freed(view, "cancelled")
        return view

    def _cancel(self, input: CancelInput) -> JobView:
        job = self.store.queue.get(input.job_id)
        self.deps.authz.require(input.request.actor, job.project_id, Role.MEMBER, "cancelling")
        if not job.status.final:
            job = self.store.queue.transition(
                job.id,
                JobStatus.CANCELLED,
                from_statuses=[s for s in JobStatus if not s.final],
                reason=input.request.reason,
                actor=input.request.actor,
            )
            metrics.job_ended(job.pool, JobStatus.CANCELLED)
        # The pod's name is known from the job and the attempt even if a crash came between
        # creating the pod and recording its name: delete that one (a 404 is fine).
        self.kube.delete_pod(
            job.pod_name or pod_name(job.id, job.attempt), self.settings.eviction_grace_seconds
        )
        return self.view(input.job_id)

    @activity.defn(name="check_pod")
    @translated
    def check_pod(self, ref: JobRef) -> PodEndedSignal | None:
        """The polling fallback: has the current pod ended without the watcher telling us?"""
        job = self.store.queue.get(ref.job_id)
        if job.pod_name is None or job.status not in (JobStatus.RUNNING, JobStatus.ADMITTED):
            return None
        try:
            pod = self.kube.get_pod(job.pod_name)
        except (KubeForbidden, KubeApiError) as exc:
            # A refused look (a 403 while a token rotates…) is no news: the next poll looks
            # again. Failing here would fail the job's workflow and orphan the job.
            activity.logger.warning("could not read pod %s: %s", job.pod_name, exc)
            return None
        if pod is None:
            return PodEndedSignal(
                pod_name=job.pod_name,
                uid="",
                attempt=job.attempt,
                outcome="Deleted",
                message="pod not found",
            )
        if pod.phase in ("Succeeded", "Failed"):
            return PodEndedSignal(
                pod_name=pod.name,
                uid=pod.uid,
                attempt=pod.attempt,
                outcome=pod.phase,
                message=pod.message,
                exit_code=pod.exit_code,
                disruption_reason=pod.disruption_reason,
            )
        return None
