"""Admission claims per second through ``qf_claim_jobs``, against ``pgbench -N`` on one server.

Every round runs, for each client count C, pgbench and claim runs alternately
(pgbench, A, pgbench, B, pgbench, …), and each claim run is compared with the mean TPS of the
pgbench runs right before and right after it:

* ``pgbench -N -c C -j C -T T`` on its own database of the same server — the commit ceiling;
* A: C processes each calling ``SELECT * FROM qf_claim_jobs(pool, 1, …)`` in a loop
  (autocommit, prepared by psycopg: one round trip and one commit per claim), all on one pool;
* B: the same with ``limit 50`` (batched admission);
* C processes with limit 1, each on its own pool (claimers of one pool take turns on the pool
  row, which they hold until commit; separate pools show what that costs), when C > 1;
* the claim function as migration 0004 wrote it (kept in the benchmark database under another
  name, over the same tables and triggers), to show what migration 0005 changed, when C = 1.

Before each run the pending queue is topped up (one INSERT … SELECT, so the jobs triggers run)
and ``jobs`` is vacuumed — pgbench vacuums its own tables before each run too.

    python -m bench.claims            # default: C in 1 2 4, 3 rounds, 2 s per run
    python -m bench.claims --quick    # smoke run
"""

from __future__ import annotations

import math
import multiprocessing
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.common import (
    BenchServer,
    World,
    bench_main,
    fmt,
    insert_pending_jobs,
    machine_summary,
    markdown_table,
    median,
    percentile,
    run_pgbench,
    seed_world,
)
from domain.weekwindow import second_of_week
from store.migrate import MIGRATIONS_DIR

SPAWN = multiprocessing.get_context("spawn")
CLAIM = "SELECT job_id, outcome, best_effort FROM {function}(%s, %s, %s, 'bench', now())"
BASELINE_FUNCTION = "qf_claim_jobs_0004"


@dataclass(frozen=True)
class Variant:
    """One kind of claim run."""

    label: str
    limit: int
    function: str = "qf_claim_jobs"
    pool_per_client: bool = False
    # client counts this variant runs at
    min_clients: int = 1
    max_clients: int = 1_000

    def runs_with(self, clients: int) -> bool:
        return self.min_clients <= clients <= self.max_clients


SINGLE = Variant("claim, limit 1", 1)
BATCH = Variant("claim, limit 50", 50)
SHARDED = Variant("claim, limit 1, one pool per client", 1, pool_per_client=True, min_clients=2)
BASELINE = Variant("0004 claim body, limit 1", 1, function=BASELINE_FUNCTION, max_clients=1)


@dataclass(frozen=True)
class Settings:
    clients: tuple[int, ...] = (1, 2, 4)
    seconds: int = 2
    rounds: int = 3
    pgbench_scale: int = 10
    variants: tuple[Variant, ...] = (SINGLE, BATCH, SHARDED, BASELINE)
    # claims per configuration of the one-session profile (0: no profile)
    profile_calls: int = 1500


QUICK = Settings(clients=(1, 2), seconds=1, rounds=1, pgbench_scale=1, profile_calls=100)


@dataclass
class ClaimRun:
    variant: Variant
    clients: int
    seconds: float
    claims: int
    jobs: int
    empty: int
    latencies_ms: list[float]
    # mean pgbench -N TPS of the runs right before and right after this one
    reference_tps: float = math.nan

    @property
    def claims_per_s(self) -> float:
        return self.claims / self.seconds

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds


@dataclass
class Profile:
    """Where the time of one claim goes, from one session (pg_stat_user_functions)."""

    label: str
    synchronous_commit: bool
    wall_ms: list[float]
    # mean per claim, from track_functions = all
    function_ms: float
    triggers_ms: float


@dataclass
class ClaimsReport:
    settings: Settings
    machine: str
    pgbench: dict[int, list[float]] = field(default_factory=dict)
    runs: list[ClaimRun] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    # pgbench -N -c 1 per-transaction latency (ms), with synchronous_commit on and off
    pgbench_latency_ms: dict[bool, list[float]] = field(default_factory=dict)

    def of(self, variant: Variant, clients: int) -> list[ClaimRun]:
        return [r for r in self.runs if r.variant == variant and r.clients == clients]

    def ratios(self, variant: Variant, clients: int) -> list[float]:
        """Claims/s over the pgbench TPS measured right around each run, one per round."""
        return [run.claims_per_s / run.reference_tps for run in self.of(variant, clients)]


# --- the claimer processes -------------------------------------------------------------------


def _claimer(
    dsn: str,
    function: str,
    pool: str,
    limit: int,
    start: Any,
    seconds: float,
    results: Any,
) -> None:
    """Claim in a loop for ``seconds`` once every claimer is ready; report what it did."""
    statement = CLAIM.format(function=function)
    sow = second_of_week(datetime.now(UTC), UTC)
    claims = jobs = empty = 0
    latencies: list[float] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Prepared from the first call on, as the application does (prepare_threshold=0).
        conn.prepare_threshold = 0
        conn.execute(statement, (pool, limit, sow)).fetchall()
        start.wait()
        deadline = time.perf_counter() + seconds
        while True:
            began = time.perf_counter()
            if began >= deadline:
                break
            admitted = sum(
                1 for row in conn.execute(statement, (pool, limit, sow)) if row[1] == "admitted"
            )
            latencies.append((time.perf_counter() - began) * 1000)
            claims += 1
            jobs += admitted
            empty += admitted == 0
    results.put((claims, jobs, empty, latencies))


def claim_run(
    server: BenchServer, pools: Sequence[str], variant: Variant, clients: int, seconds: float
) -> ClaimRun:
    results = SPAWN.Queue()
    start = SPAWN.Barrier(clients)
    processes = [
        SPAWN.Process(
            target=_claimer,
            args=(
                server.dsn,
                variant.function,
                pools[i] if variant.pool_per_client else pools[0],
                variant.limit,
                start,
                seconds,
                results,
            ),
        )
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=120 + seconds) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return ClaimRun(
        variant,
        clients,
        seconds,
        claims=sum(o[0] for o in outcomes),
        jobs=sum(o[1] for o in outcomes),
        empty=sum(o[2] for o in outcomes),
        latencies_ms=[x for o in outcomes for x in o[3]],
    )


# --- setup -----------------------------------------------------------------------------------


def install_baseline_claim(conn: psycopg.Connection[Any]) -> None:
    """Migration 0004's claim function (and 0003's qf_path_ids), under other names.

    Read from the applied migration files, which never change, so the comparison runs the exact
    code 0005 replaced.
    """
    claim_sql = (MIGRATIONS_DIR / "0004_claim.sql").read_text()
    claim_sql = claim_sql[claim_sql.index("CREATE FUNCTION qf_claim_jobs(") :]
    jobs_sql = (MIGRATIONS_DIR / "0003_jobs_and_admission.sql").read_text()
    match = re.search(r"CREATE FUNCTION qf_path_ids\(.*?\n\);\n", jobs_sql, re.DOTALL)
    assert match is not None, "qf_path_ids not found in 0003"
    path_ids_sql = match.group(0)
    for statement in (path_ids_sql, claim_sql):
        conn.execute(
            statement.replace("qf_claim_jobs(", f"{BASELINE_FUNCTION}(").replace(
                "qf_path_ids(", "qf_path_ids_0004("
            )
        )
    conn.commit()


def top_up(conn: psycopg.Connection[Any], worlds: Sequence[World], per_pool: int) -> None:
    """At least ``per_pool`` pending jobs in every pool, then a vacuum of ``jobs``."""
    for world in worlds:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE pool = %s AND status = 'PENDING'", (world.pool,)
        ).fetchone()
        missing = per_pool - (row[0] if row else 0)
        if missing > 0:
            insert_pending_jobs(conn, world, missing)
    conn.commit()
    previous = conn.autocommit
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE jobs")
    conn.autocommit = previous


def seed_pools(conn: psycopg.Connection[Any], count: int) -> list[World]:
    """One world with ``count`` pools; every pool has (practically) unlimited capacity."""
    first = seed_world(conn, pool="bench-0", plan_gpu=10_000_000)
    worlds = [first]
    for i in range(1, count):
        conn.execute(
            "INSERT INTO pools (name, gpu_capacity, cpu_capacity) VALUES (%s, 1000000, 10000000)",
            (f"bench-{i}",),
        )
        worlds.append(World(first.user_id, first.root_id, first.team_id, f"bench-{i}"))
    conn.commit()
    return worlds


def pgbench_tps(server: BenchServer, dsn: str, clients: int, seconds: int) -> float:
    args = ["-N", "-c", str(clients), "-j", str(clients), "-T", str(seconds)]
    return tps_of(run_pgbench(server, args, dsn))


def tps_of(output: str) -> float:
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if match is None:
        raise RuntimeError(f"no tps in pgbench output:\n{output}")
    return float(match.group(1))


# --- the profile ---------------------------------------------------------------------------

TRIGGER_FUNCTIONS = ("qf_jobs_before_update", "qf_jobs_after_update")


def _function_times(conn: psycopg.Connection[Any]) -> dict[str, float]:
    """Total ms spent in each function so far (this session's counters flushed first)."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")  # the flush happens at the end of a transaction
    rows = conn.execute("SELECT funcname, total_time FROM pg_stat_user_functions").fetchall()
    return {name: float(total) for name, total in rows}


def profile(
    server: BenchServer,
    pgbench_dsn: str,
    world: World,
    calls: int,
    seconds: int,
    report: ClaimsReport,
) -> None:
    """One session, limit 1: wall time per claim with and without waiting for the WAL flush,
    and how much of it is the claim function and the jobs triggers; pgbench -N alongside."""
    statement_of = {SINGLE.function: "0005 claim", BASELINE.function: "0004 claim body"}
    sow = second_of_week(datetime.now(UTC), UTC)
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.prepare_threshold = 0
        conn.execute("SET track_functions = 'all'")
        for synchronous in (True, False):
            conn.execute(f"SET synchronous_commit = {'on' if synchronous else 'off'}")
            options = "" if synchronous else "-c synchronous_commit=off"
            tps = tps_of(
                run_pgbench(
                    server, ["-N", "-c", "1", "-T", str(seconds)], pgbench_dsn, pgoptions=options
                )
            )
            report.pgbench_latency_ms.setdefault(synchronous, []).append(1000 / tps)
            for function, label in statement_of.items():
                top_up(conn, [world], calls + 100)
                statement = CLAIM.format(function=function)
                for _ in range(20):
                    conn.execute(statement, (world.pool, 1, sow)).fetchall()
                before = _function_times(conn)
                wall: list[float] = []
                for _ in range(calls):
                    began = time.perf_counter()
                    conn.execute(statement, (world.pool, 1, sow)).fetchall()
                    wall.append((time.perf_counter() - began) * 1000)
                after = _function_times(conn)

                spent = {
                    name: (after.get(name, 0.0) - before.get(name, 0.0)) / calls
                    for name in (function, *TRIGGER_FUNCTIONS)
                }
                report.profiles.append(
                    Profile(
                        label,
                        synchronous,
                        wall,
                        function_ms=spent[function],
                        triggers_ms=sum(spent[name] for name in TRIGGER_FUNCTIONS),
                    )
                )


# --- the benchmark ---------------------------------------------------------------------------


def run(settings: Settings, server: BenchServer) -> ClaimsReport:
    report = ClaimsReport(settings, machine_summary(server))
    pgbench_dsn = server.create_database("pgbench")
    run_pgbench(server, ["-i", "-q", "-s", str(settings.pgbench_scale)], pgbench_dsn)
    # Generous first guesses of jobs per second, corrected by what each run really admitted.
    expected_rate = {v: 3000.0 * v.limit**0.6 for v in settings.variants}
    with server.connect() as conn:
        install_baseline_claim(conn)
        worlds = seed_pools(conn, max(settings.clients))
        pools = [w.pool for w in worlds]
        if settings.profile_calls:
            profile(
                server, pgbench_dsn, worlds[0], settings.profile_calls, settings.seconds, report
            )
        for _ in range(settings.rounds):
            for clients in settings.clients:
                tps_before = pgbench_tps(server, pgbench_dsn, clients, settings.seconds)
                report.pgbench.setdefault(clients, []).append(tps_before)
                for variant in settings.variants:
                    if not variant.runs_with(clients):
                        continue
                    need = int(expected_rate[variant] * settings.seconds * 1.5) + 100
                    top_up(conn, worlds, need)
                    result = claim_run(server, pools, variant, clients, settings.seconds)
                    if result.empty:
                        raise RuntimeError(
                            f"{variant.label}, {clients} clients: the queue ran dry; "
                            "raise the top-up"
                        )
                    tps_after = pgbench_tps(server, pgbench_dsn, clients, settings.seconds)
                    report.pgbench[clients].append(tps_after)
                    # The ceiling right before and right after this very run.
                    result.reference_tps = (tps_before + tps_after) / 2
                    tps_before = tps_after
                    per_pool = result.jobs_per_s / (clients if variant.pool_per_client else 1)
                    expected_rate[variant] = max(expected_rate[variant], per_pool)
                    report.runs.append(result)
    return report


def render(report: ClaimsReport) -> str:
    settings = report.settings
    rows: list[list[str]] = []
    for clients in settings.clients:
        tps = report.pgbench[clients]
        rows.append([str(clients), "`pgbench -N`", fmt(median(tps)), "–", "–", "–", "1.00", "–"])
        for variant in settings.variants:
            runs = report.of(variant, clients)
            if not runs:
                continue
            latencies = [x for r in runs for x in r.latencies_ms]
            ratios = report.ratios(variant, clients)
            rows.append(
                [
                    str(clients),
                    variant.label,
                    fmt(median([r.claims_per_s for r in runs])),
                    fmt(median([r.jobs_per_s for r in runs])),
                    fmt(median(latencies)),
                    fmt(percentile(latencies, 99)),
                    fmt(median(ratios)),
                    " / ".join(fmt(r) for r in ratios),
                ]
            )
    table = markdown_table(
        [
            "clients",
            "run",
            "claims/s (or TPS)",
            "jobs/s",
            "claim p50 ms",
            "claim p99 ms",
            "× pgbench (median)",
            "× pgbench per round",
        ],
        rows,
    )
    text = (
        f"### Claims vs `pgbench -N`\n\n{report.machine}; {settings.rounds} round(s), "
        f"{settings.seconds:g} s per run, pgbench before and after every claim run; the ratio "
        f"of a run is its claims/s over the mean TPS of those two pgbench runs.\n\n{table}\n"
    )
    if report.profiles:
        text += "\n" + render_profile(report)
    return text


def render_profile(report: ClaimsReport) -> str:
    rows: list[list[str]] = []
    for synchronous in (True, False):
        commit = "on" if synchronous else "off"
        latency = report.pgbench_latency_ms.get(synchronous, [])
        pgbench = fmt(median(latency), 3)
        rows.append(["`pgbench -N` transaction", commit, "–", pgbench, "–", "–", "–"])
        for p in report.profiles:
            if p.synchronous_commit != synchronous:
                continue
            mean = sum(p.wall_ms) / len(p.wall_ms)
            rows.append(
                [
                    p.label,
                    commit,
                    fmt(median(p.wall_ms), 3),
                    fmt(mean, 3),
                    fmt(p.function_ms, 3),
                    fmt(p.triggers_ms, 3),
                    fmt(mean - p.function_ms, 3),
                ]
            )
    table = markdown_table(
        [
            "one session, limit 1",
            "synchronous_commit",
            "wall p50 ms",
            "wall mean ms",
            "in the claim function ms",
            "of which jobs triggers ms",
            "outside it (round trip, commit) ms",
        ],
        rows,
    )
    calls = len(report.profiles[0].wall_ms)
    return (
        f"#### Where a claim's time goes\n\n{calls} claims per row in one session; function "
        "times are means from `pg_stat_user_functions` (`track_functions = all`); the pgbench "
        "rows are 1 / TPS of `pgbench -N -c 1` run just before.\n\n"
        f"{table}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(
        argv,
        prog="python -m bench.claims",
        description=__doc__,
        run=run,
        render=render,
        full=Settings(),
        quick=QUICK,
    )


if __name__ == "__main__":
    sys.exit(main())
