"""Checks over the database that several tests share."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from store.audit import AuditStore
from store.db import Connection, Database

ACTIVE = {"ADMITTED", "RUNNING", "PREEMPTING"}


def assert_counters_consistent(db: Database) -> None:
    """The trigger-maintained counters equal what the jobs and active holds add up to."""
    mismatches = AuditStore(db).counter_mismatches()
    assert not mismatches, "; ".join(str(m) for m in mismatches)


def replay_pool_usage(db: Database) -> dict[str, int]:
    """Replay every pool's GPU usage from job_events in order; return the peak per pool."""
    with db.connection() as conn:
        events = conn.execute(
            "SELECT pool, from_status::text AS f, to_status::text AS t, gpu FROM job_events "
            "ORDER BY at, id"
        ).fetchall()
    usage: dict[str, int] = defaultdict(int)
    peak: dict[str, int] = defaultdict(int)
    for event in events:
        usage[event["pool"]] += _delta(event)
        peak[event["pool"]] = max(peak[event["pool"]], usage[event["pool"]])
    return dict(peak)


def _delta(event: dict[str, Any]) -> int:
    was, now = event["f"] in ACTIVE, event["t"] in ACTIVE
    return event["gpu"] * (int(now) - int(was))


def status_of(db: Database, job_id: object) -> str:
    with db.connection() as conn:
        row = conn.execute("SELECT status::text AS s FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row["s"])


def count(db: Database, table: str) -> int:
    with db.connection() as conn:
        row = conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()
    assert row is not None
    return int(row["n"])


def scalar(conn: Connection, statement: str, params: tuple[object, ...] = ()) -> Any:
    """The first column of the one row a statement returns."""
    row = conn.execute(statement, params).fetchone()
    assert row is not None
    return next(iter(row.values()))
