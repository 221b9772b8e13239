"""Victim selection, reservation, the capacity hand-over and compensation (DESIGN §5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.models import CreatePriorityClass, Job, JobStatus
from store import Store
from store.preemption import rank_victims
from tests import oracle
from tests.db.helpers import assert_counters_consistent, scalar, status_of
from tests.factories import World, seed


def run(store: Store, job: Job) -> None:
    store.queue.transition(
        job.id,
        JobStatus.RUNNING,
        from_statuses=[JobStatus.ADMITTED],
        reason="pod running",
        actor="test",
    )


def fill(w: World, sizes: list[tuple[int, str]]) -> list[Job]:
    """Submit, admit and start jobs in order (later ones started more recently)."""
    jobs = []
    for gpu, pclass in sizes:
        job = w.submit(gpu=gpu, priority_class=pclass)
        assert w.store.queue.claim(w.pool, 1).admitted == [job.id]
        run(w.store, job)
        jobs.append(job)
    return jobs


def test_reverse_pass_takes_the_fewest_victims(store: Store) -> None:
    w = seed(store, gpus=8)
    w.plan(w.team, 100)
    big, small1, small2, normal = fill(w, [(4, "low"), (1, "low"), (1, "low"), (2, "normal")])
    high = w.submit(gpu=4, priority_class="high")
    explained = store.preemption.explain(high.id)
    assert explained.outcome == "reserved"
    assert explained.plan is not None
    decisions = {c.id: c.decision for c in explained.plan.candidates}
    assert decisions == {
        small2.id: "spared",
        small1.id: "spared",
        big.id: "taken",
        normal.id: "not_needed",
    }
    assert status_of(store.db, big.id) == "RUNNING"  # explain changed nothing
    reservation = store.preemption.reserve(high.id, actor="saga")
    assert [v.id for v in reservation.victims] == [big.id]
    assert status_of(store.db, big.id) == "PREEMPTING"
    assert_counters_consistent(store.db)


def test_nobody_is_evicted_when_the_candidates_cannot_free_enough(store: Store) -> None:
    w = seed(store, gpus=8)
    w.plan(w.team, 100)
    jobs = fill(w, [(2, "low"), (6, "high")])
    urgent = w.submit(gpu=8, priority_class="high")
    result = store.preemption.reserve(urgent.id, actor="saga")
    assert result.outcome == "insufficient" and result.victims == []
    assert [status_of(store.db, j.id) for j in jobs] == ["RUNNING", "RUNNING"]


def test_eligibility(store: Store) -> None:
    w = seed(store, gpus=4)
    planned = w.project("planned", w.team)
    w.plan(planned, 1)
    fill(w, [(4, "low")])
    over_quota = w.submit(planned, gpu=2, priority_class="high")
    assert "over quota" in store.preemption.reserve(over_quota.id, actor="s").reason
    best_effort = w.submit(w.project("free", w.root), gpu=1, priority_class="high")
    assert "best effort" in store.preemption.reserve(best_effort.id, actor="s").reason
    store.catalog.create_priority_class(
        CreatePriorityClass(name="polite", value=50_000, preemption_policy="Never")
    )
    polite = w.submit(planned, gpu=1, priority_class="polite")
    assert "never preempts" in store.preemption.reserve(polite.id, actor="s").reason


def test_minimum_runtime_protects_young_jobs(store: Store) -> None:
    w = seed(store, gpus=2)
    w.plan(w.team, 10)
    store.catalog.create_priority_class(
        CreatePriorityClass(name="sticky", value=10, min_runtime_seconds=3600)
    )
    young = fill(w, [(2, "sticky")])[0]
    high = w.submit(gpu=2, priority_class="high")
    assert store.preemption.reserve(high.id, actor="s").outcome == "insufficient"
    later = datetime.now(UTC) + timedelta(hours=2)
    reservation = store.preemption.reserve(high.id, actor="s", at=later)
    assert [v.id for v in reservation.victims] == [young.id]


def test_full_saga_hands_the_freed_capacity_to_the_preemptor(store: Store) -> None:
    w = seed(store, gpus=8)
    w.plan(w.team, 100)
    victims = fill(w, [(4, "low"), (4, "low")])
    sneaky = w.submit(gpu=1, priority_class="normal")  # would take any free GPU
    high = w.submit(gpu=6, priority_class="high")
    reservation = store.preemption.reserve(high.id, actor="saga")
    assert {v.id for v in reservation.victims} == {j.id for j in victims}
    for victim in reservation.victims:
        assert store.preemption.victim_gone(victim.id, high.id, actor="saga") == "requeued"
        assert store.preemption.victim_gone(victim.id, high.id, actor="saga") == "already"
        # the GPUs the victim freed belong to the preemptor: no claim can take them
        assert store.queue.claim("main", 10).admitted == []
        assert_counters_consistent(store.db)
    admitted = store.preemption.complete(high.id, actor="saga")
    assert admitted.status == JobStatus.ADMITTED
    assert store.preemption.complete(high.id, actor="saga").id == high.id  # idempotent
    assert_counters_consistent(store.db)
    # the two spare GPUs go to the next in line, the victims wait behind
    assert store.queue.claim("main", 10).admitted == [sneaky.id]
    for job in victims:
        requeued = store.queue.get(job.id)
        assert (requeued.status, requeued.attempt, requeued.created_at) == (
            JobStatus.PENDING,
            1,
            job.created_at,
        )
        assert requeued.preempted_by == high.id
    saga = store.preemption.for_job(high.id)[0]
    assert saga["status"] == "COMPLETED" and saga["held_gpu"] == 8


def test_compensation_restores_victims_and_records_the_reason(store: Store) -> None:
    w = seed(store, gpus=8)
    w.plan(w.team, 100)
    a, b = fill(w, [(4, "low"), (4, "low")])
    high = w.submit(gpu=8, priority_class="high")
    store.preemption.reserve(high.id, actor="saga")
    outcome = store.preemption.compensate(
        high.id, reason="eviction forbidden (403)", actor="saga", evicted=[b.id]
    )
    assert outcome == {str(a.id): "restored to RUNNING", str(b.id): "requeued"}
    assert status_of(store.db, a.id) == "RUNNING" and status_of(store.db, b.id) == "PENDING"
    preemptor = store.queue.get(high.id)
    assert preemptor.status == JobStatus.PENDING
    assert "eviction forbidden (403)" in (preemptor.status_reason or "")
    assert store.preemption.compensate(high.id, reason="again", actor="saga") == {}
    assert_counters_consistent(store.db)
    with store.db.connection() as conn:
        assert scalar(conn, "SELECT count(*) FROM jobs WHERE status = 'PREEMPTING'") == 0


def test_a_victim_ending_on_its_own_still_frees_for_the_preemptor(store: Store) -> None:
    w = seed(store, gpus=4)
    w.plan(w.team, 100)
    (victim,) = fill(w, [(4, "low")])
    high = w.submit(gpu=4, priority_class="high")
    store.preemption.reserve(high.id, actor="saga")
    store.queue.transition(
        victim.id,
        JobStatus.SUCCEEDED,
        from_statuses=[JobStatus.PREEMPTING],
        reason="pod succeeded",
        actor="watcher",
    )
    assert store.preemption.victim_gone(victim.id, high.id, actor="saga") == "ended"
    assert store.queue.claim("main", 10).admitted == []
    assert store.preemption.complete(high.id, actor="saga").status == JobStatus.ADMITTED
    assert_counters_consistent(store.db)


def test_admitted_victims_return_to_admitted(store: Store) -> None:
    w = seed(store, gpus=2)
    w.plan(w.team, 100)
    low = w.submit(gpu=2, priority_class="low")
    store.queue.claim("main", 1)
    high = w.submit(gpu=2, priority_class="high")
    assert store.preemption.reserve(high.id, actor="s").victims[0].taken_from == "ADMITTED"
    store.preemption.compensate(high.id, reason="test", actor="s")
    assert status_of(store.db, low.id) == "ADMITTED"


# --- the SQL against the brute-force oracle ----------------------------------------------

running_jobs = st.lists(
    st.tuples(
        st.integers(0, 4), st.integers(0, 6), st.sampled_from([100, 1000, 10_000]), st.booleans()
    ),
    min_size=0,
    max_size=10,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(running_jobs, st.sampled_from([100, 1000, 10_000]), st.integers(0, 12), st.integers(0, 12))
def test_victim_query_matches_the_brute_force_oracle(
    store: Store,
    jobs: list[tuple[int, int, int, bool]],
    preemptor_priority: int,
    need_gpu: int,
    need_cpu: int,
) -> None:
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    running: list[oracle.Running] = []
    with store.db.connection() as conn:
        owner = scalar(conn, "INSERT INTO resource_owners (kind) VALUES ('user') RETURNING id")
        conn.execute("INSERT INTO users (id, username) VALUES (%s, 'u')", (owner,))
        project = scalar(
            conn, "INSERT INTO projects (name, owner_id) VALUES ('p', %s) RETURNING p_id", (owner,)
        )
        conn.execute("INSERT INTO pools VALUES ('p', 1000, 1000)")
        for index, (gpu, cpu, priority, best_effort) in enumerate(jobs):
            if gpu == 0 and cpu == 0:
                cpu = 1
            job_id = uuid4()
            started = t0 + timedelta(minutes=index % 4)  # ties on started_at, broken by id
            conn.execute(
                "INSERT INTO jobs (id, project_id, pool, submitted_by, priority_class, "
                "priority_value, preemption_policy, required_gpu, required_cpu) "
                "VALUES (%s, %s, 'p', %s, 'normal', %s, 'Never', %s, %s)",
                (job_id, project, owner, priority, gpu, cpu),
            )
            conn.execute(
                "UPDATE jobs SET status = 'ADMITTED', best_effort = %s WHERE id = %s",
                (best_effort, job_id),
            )
            conn.execute(
                "UPDATE jobs SET status = 'RUNNING', started_at = %s WHERE id = %s",
                (started, job_id),
            )
            running.append(oracle.Running(job_id, gpu, cpu, priority, best_effort, started))
        plan = rank_victims(
            conn,
            pool="p",
            priority=preemptor_priority,
            need_gpu=need_gpu,
            need_cpu=need_cpu,
            now=t0 + timedelta(days=1),
        )
        conn.rollback()
    expected = oracle.victims(running, preemptor_priority, need_gpu, need_cpu)
    ranked_ids = [c.id for c in plan.candidates]
    assert ranked_ids == [r.id for r in oracle.candidates(running, preemptor_priority)]
    if expected is None:
        assert not plan.enough and plan.taken == []
    else:
        assert plan.enough
        assert {c.id for c in plan.taken} == expected


def test_plan_of_a_limited_prefix_grows_until_it_frees_enough(store: Store) -> None:
    w = seed(store, gpus=200)
    w.plan(w.team, 1000)
    fill(w, [(1, "low")] * 70 + [(10, "normal")])  # 80 GPUs; the first prefix of 64 is short
    with store.db.connection() as conn:
        plan = rank_victims(
            conn,
            pool="main",
            priority=10_000,
            need_gpu=75,
            need_cpu=0,
            now=datetime.now(UTC) + timedelta(hours=1),
        )
        conn.rollback()
    assert plan.enough and sum(c.gpu for c in plan.taken) >= 75


@pytest.mark.parametrize("query", ["job_claim_batch", "victim_rank"])
def test_hot_queries_use_their_indexes(store: Store, query: str) -> None:
    import json

    from store.queries import all_queries

    w = seed(store, gpus=10_000)
    w.plan(w.team, 100_000)
    with store.db.connection() as conn:
        # enough rows that a sequential scan would be chosen if the index did not serve
        conn.execute(
            """
            INSERT INTO jobs (id, project_id, pool, submitted_by, priority_class, priority_value,
                              preemption_policy, required_gpu, required_cpu)
            SELECT gen_random_uuid(), %s, 'main', %s, 'normal', (g %% 7) * 100, 'Never', 1, 0
            FROM generate_series(1, 20000) g""",
            (w.team.p_id, w.alice.id),
        )
        conn.execute("""UPDATE jobs SET status = 'ADMITTED' WHERE id IN
                        (SELECT id FROM jobs ORDER BY id LIMIT 3000)""")
        conn.execute("UPDATE jobs SET status = 'RUNNING' WHERE status = 'ADMITTED'")
        conn.execute("ANALYZE jobs")
        if query == "job_claim_batch":
            # the claim's page query, as the function runs it
            statement = """
                EXPLAIN (FORMAT JSON) SELECT j.id FROM jobs j
                WHERE j.pool = 'main' AND j.status = 'PENDING'
                ORDER BY j.priority_value DESC, j.created_at, j.id LIMIT 100
                FOR UPDATE OF j SKIP LOCKED"""
            expected_index = "jobs_claim_order"
            params: dict[str, object] = {}
        else:
            statement = "EXPLAIN (FORMAT JSON) " + all_queries()["victim_rank"]
            expected_index = "jobs_victim_order"
            params = {
                "pool": "main",
                "priority": 10_000,
                "need_gpu": 4,
                "need_cpu": 0,
                "now": datetime.now(UTC),
                "limit": 64,
            }
        plan = conn.execute(statement, params).fetchone()
        conn.rollback()
    text = json.dumps(plan)
    assert expected_index in text, text
