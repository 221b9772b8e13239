"""The job queue: submit, claim, transitions, history."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from uuid import UUID, uuid4

from domain.errors import IllegalTransition, InvalidInput, NotFound, TransientError
from domain.models import (
    Job,
    JobEvent,
    JobStatus,
    PreemptionPolicy,
    ProjectConfig,
    SubmitJob,
)
from domain.weekwindow import second_of_week
from store.base import Repository, all_rows, one, to_model
from store.db import Connection, Database
from store.queries import q

CLAIM_ATTEMPTS = 5


@dataclass(frozen=True)
class ClaimResult:
    admitted: list[UUID] = field(default_factory=list)
    best_effort: list[UUID] = field(default_factory=list)
    # The first in-quota job that did not fit the pool: the claim stopped there and keeps the
    # free capacity for it (a candidate for preemption).
    blocked: UUID | None = None


class QueueStore(Repository):
    def __init__(self, db: Database, zone: tzinfo) -> None:
        super().__init__(db)
        self.zone = zone

    # --- submit -------------------------------------------------------------------------

    def submit(self, request: SubmitJob, actor: str) -> Job:
        """Queue a job PENDING; idempotent on ``request.id`` (a resubmit returns the job).

        Fills the pool, priority class and image from the project's configuration in force
        (its own head or its nearest ancestor's) and enforces its limits; the configuration
        commit used is recorded on the job.
        """
        job_id = request.id or uuid4()
        with self.db.connection() as conn:
            existing = one(conn, "job_get", {"job_id": job_id})
            if existing is not None:
                return self._same_job(existing, request)
            config_row = one(conn, "config_head_in_force", {"project_id": request.project_id})
            config = ProjectConfig.model_validate(config_row["content"] if config_row else {})
            pool_name = request.pool or config.defaults.pool
            if pool_name is None:
                raise InvalidInput(
                    "no pool given and the project's configuration names no default pool",
                    field="pool",
                )
            class_name = request.priority_class or config.defaults.priority_class
            self._check_limits(config, request, pool_name, class_name)

            pool = one(conn, "pool_get", {"name": pool_name})
            if pool is None:
                raise NotFound(f"no pool named {pool_name!r}")
            if request.gpu > pool["gpu_capacity"] or request.cpu > pool["cpu_capacity"]:
                raise InvalidInput(
                    f"pool {pool_name!r} has {pool['gpu_capacity']} GPU / {pool['cpu_capacity']} "
                    f"CPU; a job asking for {request.gpu} GPU / {request.cpu} CPU could never run",
                    field="gpu" if request.gpu > pool["gpu_capacity"] else "cpu",
                )
            pclass = one(conn, "priority_class_get", {"name": class_name})
            if pclass is None:
                raise NotFound(
                    f"no priority class {class_name!r}"
                    if class_name
                    else "no priority class given and none is the global default"
                )
            row = one(
                conn,
                "job_insert",
                {
                    "id": job_id,
                    "name": request.name,
                    "project_id": request.project_id,
                    "pool": pool_name,
                    "submitted_by": request.submitted_by,
                    "priority_class": pclass["name"],
                    "priority_value": pclass["value"],
                    "preemption_policy": pclass["preemption_policy"],
                    "min_runtime_seconds": pclass["min_runtime_seconds"],
                    "required_gpu": request.gpu,
                    "required_cpu": request.cpu,
                    "image": request.image or config.defaults.image,
                    "command": request.command,
                    "run_seconds": request.run_seconds,
                    "storage_id": request.storage_id,
                    "config_commit_id": config_row["id"] if config_row else None,
                    "status_reason": "submitted",
                    "status_actor": actor,
                },
            )
            if row is None:  # a concurrent submit of the same id won
                conn.rollback()
                raced = one(conn, "job_get", {"job_id": job_id})
                assert raced is not None
                return self._same_job(raced, request)
            return to_model(Job, row)

    @staticmethod
    def _same_job(row: dict[str, Any], request: SubmitJob) -> Job:
        job = to_model(Job, row)
        if (job.project_id, job.required_gpu, job.required_cpu) != (
            request.project_id,
            request.gpu,
            request.cpu,
        ):
            raise InvalidInput(
                f"job {job.id} already exists with a different project or resources", field="id"
            )
        return job

    @staticmethod
    def _check_limits(
        config: ProjectConfig, request: SubmitJob, pool: str, priority_class: str | None
    ) -> None:
        limits = config.limits
        if limits.max_gpu_per_job is not None and request.gpu > limits.max_gpu_per_job:
            raise InvalidInput(
                f"{request.gpu} GPUs is over the project's limit of "
                f"{limits.max_gpu_per_job} per job",
                field="gpu",
            )
        if limits.max_cpu_per_job is not None and request.cpu > limits.max_cpu_per_job:
            raise InvalidInput(
                f"{request.cpu} CPUs is over the project's limit of "
                f"{limits.max_cpu_per_job} per job",
                field="cpu",
            )
        if limits.allowed_pools is not None and pool not in limits.allowed_pools:
            raise InvalidInput(
                f"pool {pool!r} is not allowed for this project "
                f"(allowed: {', '.join(limits.allowed_pools)})",
                field="pool",
            )
        if (
            limits.allowed_priority_classes is not None
            and priority_class is not None
            and priority_class not in limits.allowed_priority_classes
        ):
            raise InvalidInput(
                f"priority class {priority_class!r} is not allowed for this project",
                field="priority_class",
            )

    # --- claim --------------------------------------------------------------------------

    def claim(
        self, pool: str, limit: int, *, actor: str = "dispatcher", at: datetime | None = None
    ) -> ClaimResult:
        """Admit up to ``limit`` pending jobs of ``pool`` (see sql/migrations/0004_claim.sql)."""
        at = at or datetime.now(UTC)
        params = {
            "pool": pool,
            "limit": limit,
            "sow": second_of_week(at, self.zone),
            "actor": actor,
            "now": at,
        }
        for attempt in range(CLAIM_ATTEMPTS):
            try:
                with self.db.connection() as conn:
                    rows = all_rows(conn, "job_claim_batch", params)
                break
            except TransientError:
                # Claimers of different pools sharing a subtree can, rarely, deadlock across
                # pages; PostgreSQL aborts one of them, which simply claims again.
                if attempt == CLAIM_ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        admitted = [r["job_id"] for r in rows if r["outcome"] == "admitted"]
        best_effort = [r["job_id"] for r in rows if r["outcome"] == "admitted" and r["best_effort"]]
        blocked = next((r["job_id"] for r in rows if r["outcome"] == "blocked"), None)
        return ClaimResult(admitted, best_effort, blocked)

    # --- transitions --------------------------------------------------------------------

    def transition(
        self,
        job_id: UUID,
        to: JobStatus,
        *,
        from_statuses: list[JobStatus],
        reason: str,
        actor: str,
        conn: Connection | None = None,
    ) -> Job:
        """Move a job to ``to`` if it is in one of ``from_statuses``.

        Raises :class:`IllegalTransition` naming the current status otherwise.
        """
        params = {
            "job_id": job_id,
            "to_status": to.value,
            "reason": reason,
            "actor": actor,
            "from_statuses": [s.value for s in from_statuses],
        }
        if conn is not None:
            return self._transition(conn, params, to)
        with self.db.connection() as own:
            return self._transition(own, params, to)

    @staticmethod
    def _transition(conn: Connection, params: dict[str, Any], to: JobStatus) -> Job:
        row = one(conn, "job_transition", params)
        if row is not None:
            return to_model(Job, row)
        current = one(conn, "job_get", {"job_id": params["job_id"]})
        if current is None:
            raise NotFound(f"no job {params['job_id']}")
        raise IllegalTransition(
            f"job {params['job_id']} is {current['status']}, not "
            f"{' or '.join(params['from_statuses'])}; cannot move it to {to.value}",
            status=current["status"],
        )

    def set_pod(self, job_id: UUID, attempt: int, pod_name: str) -> Job | None:
        with self.db.connection() as conn:
            row = one(
                conn, "job_set_pod", {"job_id": job_id, "attempt": attempt, "pod_name": pod_name}
            )
        return to_model(Job, row) if row else None

    def note(self, job_id: UUID, reason: str, actor: str) -> Job:
        with self.db.connection() as conn:
            row = one(conn, "job_note", {"job_id": job_id, "reason": reason, "actor": actor})
        if row is None:
            raise NotFound(f"no job {job_id}")
        return to_model(Job, row)

    # --- reads --------------------------------------------------------------------------

    def get(self, job_id: UUID) -> Job:
        with self.db.connection() as conn:
            row = one(conn, "job_get", {"job_id": job_id})
        if row is None:
            raise NotFound(f"no job {job_id}")
        return to_model(Job, row)

    def search(
        self,
        *,
        statuses: list[JobStatus] | None = None,
        pool: str | None = None,
        project_id: UUID | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return all_rows(
                conn,
                "job_list",
                {
                    "statuses": [s.value for s in statuses] if statuses else None,
                    "pool": pool,
                    "project_id": project_id,
                    "limit": limit,
                },
            )

    def events(self, job_id: UUID) -> list[JobEvent]:
        with self.db.connection() as conn:
            return [
                to_model(JobEvent, r) for r in all_rows(conn, "job_events_list", {"job_id": job_id})
            ]

    def view(self, job_id: UUID) -> dict[str, Any]:
        """The job with its project's display path and its submitter's name."""
        with self.db.connection() as conn:
            row = one(conn, "job_view", {"job_id": job_id})
        if row is None:
            raise NotFound(f"no job {job_id}")
        return row

    def admitted_without_pod(self, pool: str, older_than_seconds: float) -> list[UUID]:
        with self.db.connection() as conn:
            rows = all_rows(
                conn, "job_admitted_without_pod", {"pool": pool, "older_than": older_than_seconds}
            )
        return [r["id"] for r in rows]

    def has_pending(self, pool: str) -> bool:
        with self.db.connection() as conn:
            row = one(conn, "job_pending_exists", {"pool": pool})
        return bool(row and row["waiting"])

    def queue_position(self, job_id: UUID) -> int:
        with self.db.connection() as conn:
            row = one(conn, "job_queue_position", {"job_id": job_id})
        return int(row["ahead"]) if row else 0

    def counts(self) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return all_rows(conn, "job_counts_by_status")

    def lock(self, conn: Connection, job_id: UUID) -> Job:
        row = conn.execute(q("job_get_for_update"), {"job_id": job_id}).fetchone()
        if row is None:
            raise NotFound(f"no job {job_id}")
        return to_model(Job, row)


def preempts(job: Job) -> bool:
    return job.preemption_policy == PreemptionPolicy.PREEMPT_LOWER_PRIORITY
