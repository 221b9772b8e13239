"""Code run in separate OS processes by the concurrency tests (spawned, so module-level)."""

from __future__ import annotations

import random
import time
from datetime import UTC
from uuid import UUID

from domain.errors import PlanConflict
from domain.models import AddPlan, ResourceType
from store import Store
from store.db import Database


def _store(dsn: str) -> Store:
    return Store(Database(dsn, min_size=1, max_size=2), UTC)


def claim_until_drained(dsn: str, pool: str, batch: int, total: int, start_at: float) -> int:
    """Claim in a loop until every job of the pool has been admitted at least once."""
    store = _store(dsn)
    claimed = 0
    try:
        while time.time() < start_at:
            time.sleep(0.001)
        idle_rounds = 0
        while True:
            result = store.queue.claim(pool, batch, actor="claimer")
            claimed += len(result.admitted)
            if result.admitted:
                idle_rounds = 0
                continue
            with store.db.connection() as conn:
                left = conn.execute(
                    "SELECT count(*) AS n FROM jobs WHERE pool = %s AND status = 'PENDING'", (pool,)
                ).fetchone()
            if left is not None and left["n"] == 0:
                return claimed
            idle_rounds += 1
            time.sleep(min(0.002 * idle_rounds, 0.05))
    finally:
        store.close()


def finish_until_done(dsn: str, pools: list[str], total: int, seed: int) -> int:
    """Play the pods: move a few admitted jobs to RUNNING and SUCCEEDED, until all are done."""
    store = _store(dsn)
    rng = random.Random(seed)
    finished = 0
    try:
        while True:
            with store.db.connection() as conn:
                conn.execute(
                    """UPDATE jobs SET status = 'RUNNING', status_reason = 'pod running'
                                WHERE id IN (SELECT id FROM jobs WHERE status = 'ADMITTED'
                                             AND pool = ANY(%s) LIMIT 40
                                             FOR UPDATE SKIP LOCKED)""",
                    (pools,),
                )
                done = conn.execute(
                    """
                    UPDATE jobs SET status = 'SUCCEEDED', status_reason = 'pod succeeded'
                    WHERE id IN (SELECT id FROM jobs WHERE status = 'RUNNING'
                                 AND pool = ANY(%s) ORDER BY random() LIMIT %s
                                 FOR UPDATE SKIP LOCKED)""",
                    (pools, rng.randint(1, 30)),
                ).rowcount
                finished += done
                left = conn.execute(
                    "SELECT count(*) AS n FROM jobs WHERE pool = ANY(%s) AND status <> 'SUCCEEDED'",
                    (pools,),
                ).fetchone()
            if left is not None and left["n"] == 0:
                return finished
            time.sleep(rng.uniform(0, 0.003))
    finally:
        store.close()


def add_plan(dsn: str, project_id: str, owner_id: str, window: str, start_at: float) -> str:
    store = _store(dsn)
    try:
        while time.time() < start_at:
            time.sleep(0.0005)
        try:
            store.plans.add(
                AddPlan(
                    project_id=UUID(project_id),
                    resource_owner_id=UUID(owner_id),
                    resource_type=ResourceType.GPU,
                    quantity=4,
                    window=window,
                )
            )
        except PlanConflict as exc:
            return f"conflict: {exc}"
        return "ok"
    finally:
        store.close()


def reserve(dsn: str, preemptor_id: str, start_at: float) -> tuple[str, list[str]]:
    store = _store(dsn)
    try:
        while time.time() < start_at:
            time.sleep(0.0005)
        result = store.preemption.reserve(UUID(preemptor_id), actor="saga")
        return result.outcome, [str(v.id) for v in result.victims]
    finally:
        store.close()
