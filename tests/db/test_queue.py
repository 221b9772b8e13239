"""Admission semantics (DESIGN §4) on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.models import JobStatus, ResourceType
from store import Store
from tests.db.helpers import assert_counters_consistent, status_of
from tests.factories import seed

MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_priority_then_submission_order(store: Store) -> None:
    w = seed(store, gpus=3)
    low = w.submit(priority_class="low")
    normal1 = w.submit()
    high = w.submit(priority_class="high")
    normal2 = w.submit()
    assert store.queue.claim("main", 10).admitted == [high.id, normal1.id, normal2.id]
    assert status_of(store.db, low.id) == "PENDING"
    assert store.queue.queue_position(low.id) == 0


def test_a_job_over_quota_does_not_block_other_projects(store: Store) -> None:
    w = seed(store)
    a, b = w.project("a", w.team), w.project("b", w.team)
    w.plan(a, 2)
    w.plan(b, 8)
    a_big = w.submit(a, gpu=3, priority_class="high")  # over a's quota forever
    b_job = w.submit(b, gpu=4)
    result = store.queue.claim("main", 10)
    assert result.admitted == [b_job.id] and result.blocked is None
    assert status_of(store.db, a_big.id) == "PENDING"


def test_quota_applies_on_every_ancestor_with_a_covering_plan(store: Store) -> None:
    w = seed(store, gpus=16)
    a, b = w.project("a", w.team), w.project("b", w.team)
    w.plan(w.team, 5)  # the team as a whole
    w.plan(a, 4)
    jobs = [w.submit(a, gpu=2), w.submit(a, gpu=2), w.submit(a, gpu=2), w.submit(b, gpu=2)]
    admitted = store.queue.claim("main", 10).admitted
    # a: 2+2 (a third would pass a's 4); team: 4 + b's 2 = 6 > 5, so b waits too
    assert admitted == [jobs[0].id, jobs[1].id]
    rows = {(r["name"], r["resource_type"]): r for r in store.plans.quota_at(a.p_id, MONDAY_10)}
    assert rows[("a", "GPU")]["in_use"] == 4 and rows[("team", "GPU")]["in_use"] == 4


def test_windows_decide_quota_at_the_instant(store: Store) -> None:
    w = seed(store)
    w.plan(w.team, 1, "Mon 09:00-12:00")
    w.plan(w.team, 4, "Mon 12:00-18:00")
    jobs = [w.submit(gpu=1) for _ in range(4)]
    assert len(store.queue.claim("main", 10, at=MONDAY_10).admitted) == 1
    assert len(store.queue.claim("main", 10, at=MONDAY_10 + timedelta(hours=3)).admitted) == 3
    assert all(status_of(store.db, j.id) == "ADMITTED" for j in jobs)


def test_best_effort_runs_on_idle_capacity_and_reserves_nothing(store: Store) -> None:
    w = seed(store, gpus=4)
    planned = w.project("planned", w.team)
    w.plan(planned, 4)
    unplanned = w.project("unplanned", w.root)
    big_be = w.submit(unplanned, gpu=8 - 4, priority_class="high")  # fits only an idle pool
    w.submit(planned, gpu=1)
    first = store.queue.claim("main", 10)
    assert first.admitted == [big_be.id] and first.best_effort == [big_be.id]
    # the in-quota job behind it does not fit now; it is the blocked head (preemption target)
    assert first.blocked is not None


def test_a_large_high_priority_job_is_not_starved_by_small_ones(store: Store) -> None:
    w = seed(store, gpus=8)
    w.plan(w.team, 100)
    running = [w.submit(gpu=2) for _ in range(3)]
    assert len(store.queue.claim("main", 10).admitted) == 3  # 6 of 8 GPUs used
    big = w.submit(gpu=8, priority_class="high")
    smalls = [w.submit(gpu=1) for _ in range(5)]
    result = store.queue.claim("main", 10)
    # the 2 free GPUs are kept for the big job: no small job jumps it
    assert result.admitted == [] and result.blocked == big.id
    for job in running:
        store.queue.transition(
            job.id,
            JobStatus.CANCELLED,
            from_statuses=[JobStatus.ADMITTED],
            reason="done",
            actor="t",
        )
    assert store.queue.claim("main", 10).admitted == [big.id]
    assert all(status_of(store.db, s.id) == "PENDING" for s in smalls)


def test_batch_respects_quota_sums_within_one_claim(store: Store) -> None:
    w = seed(store, gpus=64)
    w.plan(w.team, 5)
    jobs = [w.submit(gpu=2) for _ in range(5)]
    assert store.queue.claim("main", 50).admitted == [jobs[0].id, jobs[1].id]
    assert_counters_consistent(store.db)


def test_cpu_plans_and_cpu_capacity(store: Store) -> None:
    w = seed(store, gpus=8, cpus=10)
    w.plan(w.team, 6, resource=ResourceType.CPU)
    cpu_jobs = [w.submit(gpu=0, cpu=4) for _ in range(3)]
    assert store.queue.claim("main", 10).admitted == [cpu_jobs[0].id]
    assert_counters_consistent(store.db)


def test_backed_off_job_waits_and_does_not_block(store: Store) -> None:
    w = seed(store)
    later = w.submit(gpu=1, priority_class="high")
    other = w.submit(gpu=1)
    with store.db.connection() as conn:
        conn.execute(
            "UPDATE jobs SET not_before = now() + interval '1 hour' WHERE id = %s", (later.id,)
        )
    assert store.queue.claim("main", 10).admitted == [other.id]
    assert store.queue.claim("main", 10, at=datetime.now(UTC) + timedelta(hours=2)).admitted == [
        later.id
    ]


def test_submit_is_idempotent_and_checks_the_pool(store: Store) -> None:
    import uuid

    import pytest

    from domain.errors import InvalidInput, NotFound
    from domain.models import SubmitJob

    w = seed(store, gpus=8)
    job_id = uuid.uuid4()
    request = SubmitJob(
        id=job_id, project_id=w.team.p_id, submitted_by=w.alice.id, pool="main", gpu=2
    )
    first = store.queue.submit(request, actor="alice")
    again = store.queue.submit(request, actor="alice")
    assert first.id == again.id == job_id and len(store.queue.events(job_id)) == 1
    with pytest.raises(InvalidInput, match="could never run"):
        w.submit(gpu=9)
    with pytest.raises(NotFound, match="pool"):
        w.submit(pool="nope")
    with pytest.raises(NotFound, match="priority class"):
        w.submit(priority_class="urgent")
