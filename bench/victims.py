"""Victim selection (``victim_rank``) at 1k / 10k / 100k running jobs, prefix vs naive window.

The running set is built set-based: INSERT … SELECT generate_series into ``jobs`` as PENDING,
then one UPDATE to ADMITTED and one to RUNNING (so the jobs triggers keep every counter and
event exact; the pool's capacity is huge so they admit everything), then UPDATEs that vary
priority, best effort and start time. The set grows in place from one size to the next.

Each measurement is one transaction rolled back afterwards:

* **prefix** — ``store.preemption.rank_victims``: the real code, ``victim_rank`` over an
  index-ordered ``LIMIT``ed prefix of the candidates, repeated with a 4× larger prefix when the
  prefix cannot free ``need``;
* **naive** — the same statement with no ``LIMIT`` (``LIMIT NULL``): the window over every
  candidate, each of them row-locked as the statement does;
* **naive, no locks** — the same without ``FOR UPDATE … SKIP LOCKED``, to separate the cost of
  the window from the cost of locking every candidate.

    python -m bench.victims            # 1k / 10k / 100k running jobs
    python -m bench.victims --quick    # smoke run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench.common import (
    BenchServer,
    World,
    bench_main,
    fmt,
    machine_summary,
    markdown_table,
    median,
    percentile,
    seed_world,
    time_calls,
)
from store.preemption import rank_victims
from store.queries import all_queries

PREEMPTOR_PRIORITY = 10_000  # the "high" class: low, normal and best-effort jobs are candidates
LOCKS = "FOR UPDATE OF j SKIP LOCKED"


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    needs: tuple[int, ...] = (1, 32, 256)
    repeats: int = 200
    naive_repeats: int = 15


QUICK = Settings(sizes=(200, 1_000), needs=(1, 32), repeats=20, naive_repeats=3)


@dataclass
class Cell:
    size: int
    need: int
    method: str
    samples_ms: list[float]
    candidates: int
    taken: int
    # server execution time (EXPLAIN ANALYZE, TIMING OFF), where measured
    server_ms: list[float] = field(default_factory=list)


@dataclass
class VictimsReport:
    settings: Settings
    machine: str
    cells: list[Cell] = field(default_factory=list)

    def cell(self, size: int, need: int, method: str) -> Cell:
        return next(c for c in self.cells if (c.size, c.need, c.method) == (size, need, method))


def grow_running_set(conn: psycopg.Connection[Any], world: World, count: int) -> None:
    """Add ``count`` RUNNING jobs with varied priority, size, best effort and start time."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS new_jobs (id uuid PRIMARY KEY)")
    conn.execute("TRUNCATE new_jobs")
    conn.execute(
        """
        WITH inserted AS (
            INSERT INTO jobs (id, project_id, pool, submitted_by, priority_class, priority_value,
                              preemption_policy, required_gpu, required_cpu)
            SELECT gen_random_uuid(), %(team)s, %(pool)s, %(user)s, c.name, c.value,
                   'PreemptLowerPriority', 1 + (g %% 8), 2
            FROM generate_series(1, %(count)s) AS g
            JOIN priority_classes c ON c.name = (ARRAY['low', 'normal', 'high'])[1 + g %% 3]
            RETURNING id
        )
        INSERT INTO new_jobs SELECT id FROM inserted
        """,
        {"team": world.team_id, "pool": world.pool, "user": world.user_id, "count": count},
    )
    for status in ("ADMITTED", "RUNNING"):
        conn.execute(
            "UPDATE jobs j SET status = %s, status_actor = 'bench' FROM new_jobs n "
            "WHERE j.id = n.id",
            (status,),
        )
    # One job in ten ran on idle capacity; start times spread over the last ten hours so the
    # "most recently started" order is not a tie.
    conn.execute(
        """
        UPDATE jobs j
        SET best_effort = (hashtext(j.id::text) % 10 = 0),
            started_at = now() - (abs(hashtext(j.id::text)) % 36000) * interval '1 second'
        FROM new_jobs n WHERE j.id = n.id
        """
    )
    conn.commit()
    previous = conn.autocommit
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE jobs")
    conn.autocommit = previous


def _naive_statement(locks: bool) -> str:
    statement = all_queries()["victim_rank"]
    return statement if locks else statement.replace(LOCKS, "")


def measure_size(
    server: BenchServer, world: World, size: int, settings: Settings, report: VictimsReport
) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(server.dsn, row_factory=dict_row) as conn:
        for need in settings.needs:

            def prefix(need: int = need) -> Any:
                plan = rank_victims(
                    conn,
                    pool=world.pool,
                    priority=PREEMPTOR_PRIORITY,
                    need_gpu=need,
                    need_cpu=0,
                    now=now,
                )
                conn.rollback()
                return plan

            plan = prefix()
            samples = time_calls(prefix, settings.repeats)
            report.cells.append(
                Cell(size, need, "prefix", samples, len(plan.candidates), len(plan.taken))
            )
            for method, locks in (("naive", True), ("naive, no locks", False)):
                statement = _naive_statement(locks)
                params = {
                    "pool": world.pool,
                    "priority": PREEMPTOR_PRIORITY,
                    "need_gpu": need,
                    "need_cpu": 0,
                    "now": now,
                    "limit": None,
                }

                def naive(statement: str = statement, params: dict[str, Any] = params) -> Any:
                    rows = conn.execute(statement, params).fetchall()
                    conn.rollback()
                    return rows

                rows = naive()
                taken = sum(1 for r in rows if r["decision"] == "taken")
                samples = time_calls(naive, settings.naive_repeats, warmup=1)
                cell = Cell(size, need, method, samples, len(rows), taken)
                if locks:
                    # The naive statement returns every candidate: how much of it is the server?
                    for _ in range(max(1, settings.naive_repeats // 3)):
                        explained = conn.execute(
                            "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + statement, params
                        ).fetchone()
                        conn.rollback()
                        assert explained is not None
                        cell.server_ms.append(explained["QUERY PLAN"][0]["Execution Time"])
                report.cells.append(cell)


def run(settings: Settings, server: BenchServer) -> VictimsReport:
    report = VictimsReport(settings, machine_summary(server))
    with server.connect() as conn:
        world = seed_world(conn, pool="bench", gpu_capacity=1_000_000, cpu_capacity=10_000_000)
        running = 0
        for size in settings.sizes:
            grow_running_set(conn, world, size - running)
            running = size
            measure_size(server, world, size, settings, report)
    return report


def render(report: VictimsReport) -> str:
    settings = report.settings
    smallest = settings.sizes[0]
    rows: list[list[str]] = []
    for need in settings.needs:
        base = median(report.cell(smallest, need, "prefix").samples_ms)
        for size in settings.sizes:
            prefix = report.cell(size, need, "prefix")
            naive = report.cell(size, need, "naive")
            unlocked = report.cell(size, need, "naive, no locks")
            rows.append(
                [
                    f"{size:,}",
                    str(need),
                    f"{naive.candidates:,}",
                    str(prefix.taken),
                    fmt(median(prefix.samples_ms), 3),
                    fmt(percentile(prefix.samples_ms, 99), 3),
                    fmt(median(prefix.samples_ms) / base),
                    fmt(median(naive.samples_ms)),
                    fmt(percentile(naive.samples_ms, 99)),
                    fmt(median(naive.server_ms)),
                    fmt(median(unlocked.samples_ms)),
                    fmt(median(naive.samples_ms) / median(prefix.samples_ms), 1),
                ]
            )
    table = markdown_table(
        [
            "running jobs",
            "need GPUs",
            "candidates",
            "taken",
            "prefix p50 ms",
            "prefix p99 ms",
            f"prefix growth vs {smallest:,}",
            "naive p50 ms",
            "naive p99 ms",
            "naive, server exec p50 ms",
            "naive, no locks p50 ms",
            "naive / prefix",
        ],
        rows,
    )
    return (
        f"### Victim selection\n\n{report.machine}; prefix: {settings.repeats} calls per cell, "
        f"naive: {settings.naive_repeats}; each call one transaction, rolled back.\n\n{table}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(
        argv,
        prog="python -m bench.victims",
        description=__doc__,
        run=run,
        render=render,
        full=Settings(),
        quick=QUICK,
    )


if __name__ == "__main__":
    sys.exit(main())
