"""Checks over the database that several tests share."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from store.db import Connection, Database

ACTIVE = {"ADMITTED", "RUNNING", "PREEMPTING"}


def assert_counters_consistent(db: Database) -> None:
    """The trigger-maintained counters equal what the jobs and active holds add up to."""
    with db.connection() as conn:
        pools = conn.execute("""
            SELECT p.name, p.gpu_in_use, p.cpu_in_use,
                   coalesce((SELECT sum(required_gpu) FROM jobs j WHERE j.pool = p.name
                             AND j.status IN ('ADMITTED','RUNNING','PREEMPTING')), 0)
                   + coalesce((SELECT sum(held_gpu) FROM preemptions h WHERE h.pool = p.name
                               AND h.status = 'ACTIVE'), 0) AS gpu_expected,
                   coalesce((SELECT sum(required_cpu) FROM jobs j WHERE j.pool = p.name
                             AND j.status IN ('ADMITTED','RUNNING','PREEMPTING')), 0)
                   + coalesce((SELECT sum(held_cpu) FROM preemptions h WHERE h.pool = p.name
                               AND h.status = 'ACTIVE'), 0) AS cpu_expected
            FROM pools p""").fetchall()
        for row in pools:
            assert (row["gpu_in_use"], row["cpu_in_use"]) == (
                row["gpu_expected"],
                row["cpu_expected"],
            ), row
        usage = conn.execute("""
            SELECT a.p_id, u.gpu_in_use, u.cpu_in_use,
                   coalesce((SELECT sum(j.required_gpu) FROM jobs j JOIN projects p
                             ON p.p_id = j.project_id WHERE p.path <@ a.path
                             AND j.status IN ('ADMITTED','RUNNING','PREEMPTING')), 0)
                   + coalesce((SELECT sum(h.quota_gpu) FROM preemptions h JOIN jobs j
                               ON j.id = h.preemptor_id JOIN projects p ON p.p_id = j.project_id
                               WHERE p.path <@ a.path AND h.status = 'ACTIVE'), 0)
                       AS gpu_expected
            FROM projects a JOIN project_usage u ON u.project_id = a.p_id""").fetchall()
        for row in usage:
            assert row["gpu_in_use"] == row["gpu_expected"], row


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
