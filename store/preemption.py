"""Preemption in the database: choose victims, reserve them, hand their capacity to the preemptor.

The saga (workflows/preemption.py) drives these steps; each is one transaction:

* :meth:`PreemptionStore.reserve` — rank the victims (sql/queries/preemptions.sql,
  ``victim_rank``), move the chosen ones to PREEMPTING with ``preempted_by``, and open a
  ``preemptions`` row that holds the pool's free capacity and the preemptor's quota. From here
  on every GPU a victim frees goes to that hold (jobs trigger), not back to the pool.
* :meth:`PreemptionStore.victim_gone` — a victim's pod is gone: PREEMPTED, then back to PENDING
  with ``attempt + 1`` (and a backoff after repeated preemption).
* :meth:`PreemptionStore.complete` — give the hold back and admit the preemptor in the same
  transaction, so no claimer can slip in between.
* :meth:`PreemptionStore.compensate` — undo: victims not evicted return to the state they were
  taken from, evicted ones are requeued, the holds are released, the reason is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal
from uuid import UUID

from psycopg.types.json import Jsonb

from domain.errors import IllegalTransition, NotFound
from domain.models import Job, JobStatus, PreemptionPolicy
from domain.weekwindow import second_of_week
from store.base import Repository, all_rows, one, run, to_model
from store.db import Connection, Database
from store.queries import q

FIRST_PREFIX = 64


@dataclass(frozen=True)
class RankedCandidate:
    id: UUID
    rank: int
    status: str
    best_effort: bool
    priority_value: int
    priority_class: str
    started_at: datetime | None
    gpu: int
    cpu: int
    cum_gpu: int
    cum_cpu: int
    # taken | spared (reverse pass) | not_needed (after the prefix) | insufficient
    decision: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "rank": self.rank,
            "status": self.status,
            "best_effort": self.best_effort,
            "priority_value": self.priority_value,
            "priority_class": self.priority_class,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "gpu": self.gpu,
            "cpu": self.cpu,
            "cum_gpu": self.cum_gpu,
            "cum_cpu": self.cum_cpu,
            "decision": self.decision,
        }


@dataclass(frozen=True)
class VictimPlan:
    need_gpu: int
    need_cpu: int
    candidates: list[RankedCandidate]

    @property
    def taken(self) -> list[RankedCandidate]:
        return [c for c in self.candidates if c.decision == "taken"]

    @property
    def enough(self) -> bool:
        return not any(c.decision == "insufficient" for c in self.candidates) and (
            (self.need_gpu <= 0 and self.need_cpu <= 0) or bool(self.taken)
        )


Outcome = Literal["reserved", "fits", "not_eligible", "insufficient"]


@dataclass(frozen=True)
class Victim:
    id: UUID
    taken_from: JobStatus
    pod_name: str | None
    attempt: int


@dataclass(frozen=True)
class Reservation:
    outcome: Outcome
    reason: str
    preemption_id: UUID | None = None
    victims: list[Victim] = field(default_factory=list)
    plan: VictimPlan | None = None


@dataclass(frozen=True)
class BackoffPolicy:
    """A job preempted ``after`` times or more waits before it may be admitted again."""

    after: int = 2
    base_seconds: float = 30.0
    max_seconds: float = 900.0

    def not_before(self, attempt: int, now: datetime) -> datetime | None:
        if attempt < self.after:
            return None
        delay = min(self.base_seconds * 2 ** (attempt - self.after), self.max_seconds)
        return now + timedelta(seconds=delay)


def rank_victims(
    conn: Connection, *, pool: str, priority: int, need_gpu: int, need_cpu: int, now: datetime
) -> VictimPlan:
    """Run ``victim_rank`` on a growing prefix until it frees ``need`` or sees every candidate."""
    limit = FIRST_PREFIX
    while True:
        rows = all_rows(
            conn,
            "victim_rank",
            {
                "pool": pool,
                "priority": priority,
                "need_gpu": need_gpu,
                "need_cpu": need_cpu,
                "now": now,
                "limit": limit,
            },
        )
        short = bool(rows) and rows[0]["decision"] == "insufficient"
        if short and rows[0]["candidate_count"] >= limit:
            limit *= 4
            continue
        break
    return VictimPlan(
        need_gpu,
        need_cpu,
        [
            RankedCandidate(
                id=r["id"],
                rank=r["rank"],
                status=r["status"],
                best_effort=r["best_effort"],
                priority_value=r["priority_value"],
                priority_class=r["priority_class"],
                started_at=r["started_at"],
                gpu=r["required_gpu"],
                cpu=r["required_cpu"],
                cum_gpu=int(r["cum_gpu"]),
                cum_cpu=int(r["cum_cpu"]),
                decision=r["decision"],
            )
            for r in rows
        ],
    )


class PreemptionStore(Repository):
    def __init__(self, db: Database, zone: tzinfo, backoff: BackoffPolicy | None = None) -> None:
        super().__init__(db)
        self.zone = zone
        self.backoff = backoff or BackoffPolicy()

    def explain(self, preemptor_id: UUID, at: datetime | None = None) -> Reservation:
        """What :meth:`reserve` would do now, changing nothing."""
        with self.db.connection() as conn:
            result, _, _ = self._decide(conn, preemptor_id, at or datetime.now(UTC))
            conn.rollback()
        return result

    def reserve(self, preemptor_id: UUID, *, actor: str, at: datetime | None = None) -> Reservation:
        at = at or datetime.now(UTC)
        with self.db.connection() as conn:
            decided, job, pool = self._decide(conn, preemptor_id, at)
            if decided.outcome != "reserved" or decided.plan is None:
                conn.rollback()
                return decided
            assert job is not None and pool is not None
            plan = decided.plan
            taken_ids = [c.id for c in plan.taken]
            reserved = all_rows(
                conn,
                "victims_reserve",
                {
                    "preemptor_id": preemptor_id,
                    "victim_ids": taken_ids,
                    "actor": actor,
                    "reason": f"victim of {preemptor_id} ({job.priority_class}, "
                    f"{job.required_gpu} GPU)",
                },
            )
            if len(reserved) != len(taken_ids):  # impossible while we hold their row locks
                raise IllegalTransition("a chosen victim changed under the reservation")
            held_gpu = min(max(pool["free_gpu"], 0), job.required_gpu)
            held_cpu = min(max(pool["free_cpu"], 0), job.required_cpu)
            preemption = one(
                conn,
                "preemption_insert",
                {
                    "preemptor_id": preemptor_id,
                    "pool": job.pool,
                    "need_gpu": plan.need_gpu,
                    "need_cpu": plan.need_cpu,
                    "held_gpu": held_gpu,
                    "held_cpu": held_cpu,
                    "quota_gpu": job.required_gpu,
                    "quota_cpu": job.required_cpu,
                    "victims": taken_ids,
                    "ranking": Jsonb([c.to_json() for c in plan.candidates]),
                },
            )
            assert preemption is not None
            run(conn, "pool_hold_adjust", {"pool": job.pool, "gpu": held_gpu, "cpu": held_cpu})
            run(
                conn,
                "usage_hold_adjust",
                {"project_id": job.project_id, "gpu": job.required_gpu, "cpu": job.required_cpu},
            )
            return Reservation(
                "reserved",
                decided.reason,
                preemption["id"],
                [
                    Victim(r["id"], JobStatus(r["preempted_from"]), r["pod_name"], r["attempt"])
                    for r in reserved
                ],
                plan,
            )

    def _decide(
        self, conn: Connection, preemptor_id: UUID, at: datetime
    ) -> tuple[Reservation, Job | None, dict[str, Any] | None]:
        """Lock the preemptor and its pool and decide; the rows are returned for reserve()."""
        row = one(conn, "job_get_for_update", {"job_id": preemptor_id})
        if row is None:
            raise NotFound(f"no job {preemptor_id}")
        job = to_model(Job, row)
        if job.status != JobStatus.PENDING:
            return (
                Reservation("not_eligible", f"the job is {job.status.value}, not PENDING"),
                job,
                None,
            )
        if job.preemption_policy == PreemptionPolicy.NEVER:
            return (
                Reservation("not_eligible", f"priority class {job.priority_class} never preempts"),
                job,
                None,
            )
        if one(conn, "preemption_active_for_update", {"preemptor_id": preemptor_id}):
            return (
                Reservation("not_eligible", "a preemption for this job is already under way"),
                job,
                None,
            )
        pool = one(conn, "pool_lock", {"name": job.pool})
        assert pool is not None
        need_gpu = max(0, job.required_gpu - pool["free_gpu"])
        need_cpu = max(0, job.required_cpu - pool["free_cpu"])
        if need_gpu == 0 and need_cpu == 0:
            return (
                Reservation("fits", "the job fits the pool's free capacity; no preemption"),
                job,
                pool,
            )
        all_rows(conn, "usage_lock_path", {"project_id": job.project_id})
        limits = [
            r
            for r in all_rows(
                conn,
                "plan_quota_at",
                {"project_id": job.project_id, "sow": second_of_week(at, self.zone)},
            )
            if (job.required_gpu if r["resource_type"] == "GPU" else job.required_cpu) > 0
        ]
        if not limits:
            return (
                Reservation(
                    "not_eligible",
                    "best effort: no plan covers the project now, "
                    "and best-effort jobs never preempt",
                ),
                job,
                pool,
            )
        for limit in limits:
            amount = job.required_gpu if limit["resource_type"] == "GPU" else job.required_cpu
            if limit["in_use"] + amount > limit["quantity"]:
                return (
                    Reservation(
                        "not_eligible",
                        f"over quota: {limit['name']} uses {limit['in_use']} of "
                        f"{limit['quantity']} {limit['resource_type']}, the job needs {amount}",
                    ),
                    job,
                    pool,
                )
        plan = rank_victims(
            conn,
            pool=job.pool,
            priority=job.priority_value,
            need_gpu=need_gpu,
            need_cpu=need_cpu,
            now=at,
        )
        if not plan.enough:
            return (
                Reservation(
                    "insufficient",
                    f"all {len(plan.candidates)} candidate(s) together cannot free "
                    f"{need_gpu} GPU / {need_cpu} CPU",
                    plan=plan,
                ),
                job,
                pool,
            )
        return (
            Reservation(
                "reserved",
                f"evicting {len(plan.taken)} job(s) to free {need_gpu} GPU / {need_cpu} CPU",
                plan=plan,
            ),
            job,
            pool,
        )

    # --- after eviction --------------------------------------------------------------------

    def victim_gone(
        self, victim_id: UUID, preemptor_id: UUID, *, actor: str, at: datetime | None = None
    ) -> str:
        """A victim's pod is gone: PREEMPTED, then requeued. Idempotent.

        Returns ``requeued``, ``already`` (done before: a retry) or ``ended`` (the job ended or
        was cancelled on its own meanwhile; nothing to requeue).
        """
        at = at or datetime.now(UTC)
        with self.db.connection() as conn:
            job = to_model(Job, self._locked(conn, victim_id))
            return self._victim_gone(conn, job, preemptor_id, actor, at)

    def _victim_gone(
        self, conn: Connection, job: Job, preemptor_id: UUID, actor: str, at: datetime
    ) -> str:
        if job.status == JobStatus.PREEMPTING and job.preempted_by == preemptor_id:
            conn.execute(
                q("job_transition"),
                {
                    "job_id": job.id,
                    "to_status": "PREEMPTED",
                    "from_statuses": ["PREEMPTING"],
                    "reason": f"evicted for {preemptor_id}",
                    "actor": actor,
                },
            )
            conn.execute(
                q("job_requeue"),
                {
                    "job_id": job.id,
                    "actor": actor,
                    "reason": f"requeued after preemption by {preemptor_id}",
                    "not_before": self.backoff.not_before(job.attempt + 1, at),
                },
            )
            return "requeued"
        if job.status.final:
            return "ended"
        if job.preempted_by == preemptor_id:
            # Requeued by an earlier try of this step — and maybe admitted again since, when
            # this is a retry long after (preempted_by survives the requeue): done already.
            return "already"
        raise IllegalTransition(
            f"job {job.id} is {job.status.value} and not a victim of {preemptor_id}"
        )

    def complete(self, preemptor_id: UUID, *, actor: str) -> Job:
        """Release the hold and admit the preemptor, in one transaction. Idempotent."""
        with self.db.connection() as conn:
            job = to_model(Job, self._locked(conn, preemptor_id))
            one(conn, "pool_lock", {"name": job.pool})
            saga = one(conn, "preemption_active_for_update", {"preemptor_id": preemptor_id})
            if saga is None:
                latest = one(conn, "preemption_list_for_job", {"job_id": preemptor_id})
                if latest is not None and latest["status"] == "COMPLETED":
                    return job  # a retry after the commit: admitted then, whatever it is now
                raise IllegalTransition(f"job {preemptor_id} has no preemption under way")
            pending = conn.execute(
                "SELECT id FROM jobs WHERE preempted_by = %s AND status = 'PREEMPTING'",
                (preemptor_id,),
            ).fetchall()
            if pending:
                raise IllegalTransition(
                    f"{len(pending)} victim(s) of {preemptor_id} are still being evicted"
                )
            if job.status != JobStatus.PENDING:
                raise IllegalTransition(f"the preemptor is {job.status.value}, not PENDING")
            self._release(conn, saga, job)
            row = one(
                conn,
                "job_transition",
                {
                    "job_id": preemptor_id,
                    "to_status": "ADMITTED",
                    "from_statuses": ["PENDING"],
                    "reason": f"admitted by preemption {saga['id']}",
                    "actor": actor,
                },
            )
            run(
                conn,
                "preemption_finish",
                {"id": saga["id"], "status": "COMPLETED", "reason": "preemptor admitted"},
            )
            assert row is not None
            return to_model(Job, row)

    def compensate(
        self,
        preemptor_id: UUID,
        *,
        reason: str,
        actor: str,
        evicted: Sequence[UUID] = (),
        at: datetime | None = None,
    ) -> dict[str, str]:
        """Undo a saga. Idempotent.

        Victims in ``evicted`` (their eviction was accepted) are requeued; every other victim
        still PREEMPTING returns to the state it was taken from. The holds are released and the
        reason is written on the saga and on the preemptor. Returns what happened to each victim.
        """
        at = at or datetime.now(UTC)
        outcome: dict[str, str] = {}
        with self.db.connection() as conn:
            job = to_model(Job, self._locked(conn, preemptor_id))
            # Lock order (docs/en/database.md): job rows, then the pool, then the saga row. A
            # victim ending right now holds its own row and wants the saga row (its capacity
            # goes to the hold): take the victims' rows before the saga's, or we deadlock.
            victim_ids = conn.execute(
                "SELECT victims FROM preemptions WHERE preemptor_id = %s AND status = 'ACTIVE'",
                (preemptor_id,),
            ).fetchone()
            victims = {
                victim_id: to_model(Job, self._locked(conn, victim_id))
                for victim_id in sorted(victim_ids["victims"] if victim_ids else [])
            }
            one(conn, "pool_lock", {"name": job.pool})
            saga = one(conn, "preemption_active_for_update", {"preemptor_id": preemptor_id})
            if saga is None:
                return outcome
            for victim_id in saga["victims"]:
                victim = victims[victim_id]
                if victim.status != JobStatus.PREEMPTING or victim.preempted_by != preemptor_id:
                    outcome[str(victim_id)] = victim.status.value
                    continue
                if victim_id in evicted:
                    outcome[str(victim_id)] = self._victim_gone(
                        conn, victim, preemptor_id, actor, at
                    )
                    continue
                assert victim.preempted_from is not None
                conn.execute(
                    q("job_transition"),
                    {
                        "job_id": victim_id,
                        "to_status": victim.preempted_from.value,
                        "from_statuses": ["PREEMPTING"],
                        "reason": f"preemption by {preemptor_id} undone: {reason}",
                        "actor": actor,
                    },
                )
                outcome[str(victim_id)] = f"restored to {victim.preempted_from.value}"
            self._release(conn, saga, job)
            run(
                conn,
                "preemption_finish",
                {"id": saga["id"], "status": "COMPENSATED", "reason": reason},
            )
            if job.status == JobStatus.PENDING:
                run(
                    conn,
                    "job_note",
                    {
                        "job_id": preemptor_id,
                        "actor": actor,
                        "reason": f"preemption undone: {reason}",
                    },
                )
        return outcome

    @staticmethod
    def _release(conn: Connection, saga: dict[str, Any], job: Job) -> None:
        current = conn.execute(
            "SELECT held_gpu, held_cpu FROM preemptions WHERE id = %s", (saga["id"],)
        ).fetchone()
        assert current is not None
        run(
            conn,
            "pool_hold_adjust",
            {"pool": saga["pool"], "gpu": -current["held_gpu"], "cpu": -current["held_cpu"]},
        )
        all_rows(conn, "usage_lock_path", {"project_id": job.project_id})
        run(
            conn,
            "usage_hold_adjust",
            {"project_id": job.project_id, "gpu": -saga["quota_gpu"], "cpu": -saga["quota_cpu"]},
        )

    @staticmethod
    def _locked(conn: Connection, job_id: UUID) -> dict[str, Any]:
        row = one(conn, "job_get_for_update", {"job_id": job_id})
        if row is None:
            raise NotFound(f"no job {job_id}")
        return row

    def for_job(self, job_id: UUID) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return all_rows(conn, "preemption_list_for_job", {"job_id": job_id})

    def of_victim(self, job_id: UUID) -> dict[str, Any] | None:
        with self.db.connection() as conn:
            return one(conn, "preemption_of_victim", {"job_id": job_id})
