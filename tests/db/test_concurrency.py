"""Several OS processes against one PostgreSQL: the guarantees that only the database can give."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

import pytest

from domain.models import JobStatus, SetPool
from store import Store
from tests.db import workers
from tests.db.helpers import assert_counters_consistent, replay_pool_usage
from tests.factories import seed

SPAWN = multiprocessing.get_context("spawn")


def bulk_jobs(
    store: Store,
    *,
    project_ids: list[object],
    user_id: object,
    pool: str,
    count: int,
    sizes: list[int],
    seed_value: int,
) -> None:
    """Insert many PENDING jobs at once (through the triggers, like submit does)."""
    rng = random.Random(seed_value)
    classes = [("low", 100), ("normal", 1000), ("high", 10000)]
    rows = []
    for _ in range(count):
        name, value = rng.choice(classes)
        rows.append((rng.choice(project_ids), pool, user_id, name, value, rng.choice(sizes)))
    with store.db.connection() as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO jobs (id, project_id, pool, submitted_by, priority_class, "
            "priority_value, preemption_policy, required_gpu, required_cpu) "
            "VALUES (gen_random_uuid(), %s, %s, %s, %s, %s, 'PreemptLowerPriority', %s, 0)",
            rows,
        )


@pytest.mark.slow
def test_parallel_claimers_admit_each_job_once_in_order_within_capacity(
    store: Store, db_dsn: str
) -> None:
    total, capacity = 10_000, 64
    w = seed(store, gpus=capacity)
    projects = [w.project(f"p{i}", w.team) for i in range(5)]
    for project in projects:
        w.plan(project, 10_000)
    bulk_jobs(
        store,
        project_ids=[p.p_id for p in projects],
        user_id=w.alice.id,
        pool="main",
        count=total,
        sizes=[1],
        seed_value=7,
    )
    start_at = time.time() + 2.0
    with ProcessPoolExecutor(max_workers=5, mp_context=SPAWN) as executor:
        claimers = [
            executor.submit(workers.claim_until_drained, db_dsn, "main", 50, total, start_at)
            for _ in range(4)
        ]
        finisher = executor.submit(workers.finish_until_done, db_dsn, ["main"], total, 1)
        claimed = sum(f.result(timeout=600) for f in claimers)
        finished = finisher.result(timeout=600)
    assert claimed == total and finished == total
    with store.db.connection() as conn:
        admissions = conn.execute("""
            SELECT e.job_id, j.priority_value, j.created_at
            FROM job_events e JOIN jobs j ON j.id = e.job_id
            WHERE e.to_status = 'ADMITTED' ORDER BY e.at, e.id""").fetchall()
        queue_order = conn.execute("""
            SELECT id FROM jobs ORDER BY priority_value DESC, created_at, id""").fetchall()
    # each job admitted exactly once …
    assert len(admissions) == total == len({a["job_id"] for a in admissions})
    # … in queue order, across all claimers (the pool lock serialises them) …
    assert [a["job_id"] for a in admissions] == [r["id"] for r in queue_order]
    # … and the pool never held more than its capacity at any instant.
    assert replay_pool_usage(store.db)["main"] <= capacity
    assert_counters_consistent(store.db)


@pytest.mark.slow
def test_quota_holds_across_pools_claimed_in_parallel(store: Store, db_dsn: str) -> None:
    quota = 12
    w = seed(store, gpus=40)
    store.catalog.set_pool(SetPool(name="second", gpu_capacity=40, cpu_capacity=64))
    w.plan(w.team, quota)
    leaf_a, leaf_b = w.project("a", w.team), w.project("b", w.team)
    for pool, seed_value in (("main", 1), ("second", 2)):
        bulk_jobs(
            store,
            project_ids=[leaf_a.p_id, leaf_b.p_id],
            user_id=w.alice.id,
            pool=pool,
            count=600,
            sizes=[1, 2, 3, 4],
            seed_value=seed_value,
        )
    start_at = time.time() + 2.0
    with ProcessPoolExecutor(max_workers=6, mp_context=SPAWN) as executor:
        futures = [
            executor.submit(workers.claim_until_drained, db_dsn, name, 20, 600, start_at)
            for name in ("main", "main", "second", "second")
        ]
        finisher = executor.submit(workers.finish_until_done, db_dsn, ["main", "second"], 1200, 3)
        claimed = sum(f.result(timeout=600) for f in futures)
        finisher.result(timeout=600)
    assert claimed == 1200
    with store.db.connection() as conn:
        events = conn.execute("""
            SELECT e.from_status::text AS f, e.to_status::text AS t, e.gpu
            FROM job_events e ORDER BY e.at, e.id""").fetchall()
    active = {"ADMITTED", "RUNNING", "PREEMPTING"}
    usage, peak = 0, 0
    for e in events:
        usage += e["gpu"] * (int(e["t"] in active) - int(e["f"] in active))
        peak = max(peak, usage)
    assert 0 < peak <= quota
    assert_counters_consistent(store.db)


def test_twenty_concurrent_overlapping_plans_exactly_one_wins(store: Store, db_dsn: str) -> None:
    w = seed(store)
    windows = [f"Mon {9 + i % 3:02d}:{(i * 7) % 60:02d}-Mon 14:00" for i in range(20)]
    start_at = time.time() + 2.0
    with ProcessPoolExecutor(max_workers=20, mp_context=SPAWN) as executor:
        results = list(
            executor.map(
                workers.add_plan,
                [db_dsn] * 20,
                [str(w.team.p_id)] * 20,
                [str(w.admin.id)] * 20,
                windows,
                [start_at] * 20,
            )
        )
    assert results.count("ok") == 1
    conflicts = [r for r in results if r != "ok"]
    assert len(conflicts) == 19
    assert all("overlaps GPU plan Mon" in r for r in conflicts), conflicts
    assert len(store.plans.for_project(w.team.p_id)) == 1


def test_concurrent_preemptors_get_disjoint_victims(store: Store, db_dsn: str) -> None:
    w = seed(store, gpus=16)
    w.plan(w.team, 1000)
    lows = [w.submit(gpu=1, priority_class="low") for _ in range(16)]
    assert len(store.queue.claim("main", 100).admitted) == 16
    for job in lows:
        store.queue.transition(
            job.id,
            JobStatus.RUNNING,
            from_statuses=[JobStatus.ADMITTED],
            reason="running",
            actor="t",
        )
    highs = [w.submit(gpu=4, priority_class="high") for _ in range(5)]  # one too many
    start_at = time.time() + 2.0
    with ProcessPoolExecutor(max_workers=5, mp_context=SPAWN) as executor:
        results = list(
            executor.map(workers.reserve, [db_dsn] * 5, [str(h.id) for h in highs], [start_at] * 5)
        )
    outcomes = sorted(r[0] for r in results)
    assert outcomes == ["insufficient", "reserved", "reserved", "reserved", "reserved"]
    taken = [v for _, victims in results for v in victims]
    assert len(taken) == 16 == len(set(taken))  # disjoint, and all of them
    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT preempted_by, count(*) AS n FROM jobs "
            "WHERE status = 'PREEMPTING' GROUP BY preempted_by"
        ).fetchall()
    per_preemptor = defaultdict(int, {r["preempted_by"]: r["n"] for r in rows})
    assert sorted(per_preemptor.values()) == [4, 4, 4, 4]
    assert_counters_consistent(store.db)
