"""What every benchmark shares: its own durable embedded server, seeding, statistics, tables.

Each benchmark starts a fresh embedded PostgreSQL (durable: the default fsync settings, so its
numbers are comparable with pgbench on the same server) in a temporary folder under /tmp on a
free port, creates a database, applies the migrations, and stops the server at the end even on
error. Timings are wall-clock through psycopg unless a table says "server-side".
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devstack.postgres import EmbeddedPostgres, free_port
from store.migrate import migrate

BENCH_DB = "qfbench"


@dataclass(frozen=True)
class BenchServer:
    """A running embedded server with a migrated database ``qfbench``."""

    server: EmbeddedPostgres
    dsn: str

    @property
    def bin_dir(self) -> Path:
        return self.server.bin_dir

    def dsn_for(self, database: str) -> str:
        params = conninfo_to_dict(self.dsn)
        params["dbname"] = database
        return make_conninfo(**params)  # type: ignore[arg-type]

    def admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.server.admin_dsn(), autocommit=True)

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.dsn, autocommit=autocommit)

    def create_database(self, name: str) -> str:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def pg_version(self) -> str:
        with self.admin() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"


@contextlib.contextmanager
def bench_server(*, track_functions: bool = False) -> Iterator[BenchServer]:
    """A fresh durable server with a migrated ``qfbench`` database; always stopped at the end."""
    state = Path(tempfile.mkdtemp(prefix="quotaflow-bench-", dir="/tmp"))
    server = EmbeddedPostgres(state, port=free_port(), durable=True, max_connections=100)
    try:
        server.acquire()
        with psycopg.connect(server.admin_dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
            if track_functions:
                conn.execute("ALTER SYSTEM SET track_functions = 'all'")
                conn.execute("SELECT pg_reload_conf()")
        params = conninfo_to_dict(server.admin_dsn())
        params["dbname"] = BENCH_DB
        dsn = make_conninfo(**params)  # type: ignore[arg-type]
        with psycopg.connect(dsn) as conn:
            migrate(conn)
        yield BenchServer(server, dsn)
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)
        # As root the data folder may live under /var/tmp/quotaflow (devstack.postgres).
        if server.data_dir.parent != server.home:
            shutil.rmtree(server.data_dir.parent, ignore_errors=True)


# --- a world to benchmark in ----------------------------------------------------------------


@dataclass(frozen=True)
class World:
    user_id: str
    root_id: str
    team_id: str
    pool: str


def seed_world(
    conn: psycopg.Connection[Any],
    *,
    pool: str = "bench",
    gpu_capacity: int = 1_000_000,
    cpu_capacity: int = 10_000_000,
    plan_gpu: int | None = None,
) -> World:
    """A user, a project ``org/team``, a pool, and (if ``plan_gpu``) an always-on GPU plan on org.

    Written with plain SQL so the benchmarks do not depend on the Python store's overheads; the
    tables' triggers (paths, usage rows) still run.
    """
    user = _scalar(
        conn, "INSERT INTO resource_owners (kind) VALUES ('user') RETURNING id::text", ()
    )
    conn.execute("INSERT INTO users (id, username) VALUES (%s, 'bench')", (user,))
    root = _scalar(
        conn,
        "INSERT INTO projects (name, owner_id) VALUES ('org', %s) RETURNING p_id::text",
        (user,),
    )
    team = _scalar(
        conn,
        "INSERT INTO projects (name, owner_id, parent_id) VALUES ('team', %s, %s) "
        "RETURNING p_id::text",
        (user, root),
    )
    conn.execute(
        "INSERT INTO pools (name, gpu_capacity, cpu_capacity) VALUES (%s, %s, %s)",
        (pool, gpu_capacity, cpu_capacity),
    )
    if plan_gpu is not None:
        conn.execute(
            "INSERT INTO resource_plans (plan_group, project_id, resource_owner_id, "
            "resource_type, quantity, week_window) "
            "VALUES (gen_random_uuid(), %s, %s, 'GPU', %s, int4range(0, 604800))",
            (root, user, plan_gpu),
        )
    conn.commit()
    return World(user, root, team, pool)


def insert_pending_jobs(
    conn: psycopg.Connection[Any], world: World, count: int, *, gpu: int = 1, cpu: int = 1
) -> None:
    """``count`` PENDING jobs in one INSERT … SELECT, so the jobs triggers run once per row set."""
    conn.execute(
        """
        INSERT INTO jobs (id, project_id, pool, submitted_by, priority_class, priority_value,
                          preemption_policy, required_gpu, required_cpu, created_at)
        SELECT gen_random_uuid(), %(team)s, %(pool)s, %(user)s, 'normal', 1000,
               'PreemptLowerPriority', %(gpu)s, %(cpu)s,
               now() - interval '1 day' + g * interval '1 millisecond'
        FROM generate_series(1, %(count)s) AS g
        """,
        {
            "team": world.team_id,
            "pool": world.pool,
            "user": world.user_id,
            "gpu": gpu,
            "cpu": cpu,
            "count": count,
        },
    )
    conn.commit()


def _scalar(conn: psycopg.Connection[Any], statement: str, params: Sequence[Any]) -> Any:
    row = conn.execute(statement, params).fetchone()
    assert row is not None
    return row[0]


# --- statistics and output ------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 198th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def time_calls(call: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    """Milliseconds per call of ``call``, after ``warmup`` unmeasured calls."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def fmt(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_summary(server: BenchServer) -> str:
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {server.pg_version()} (embedded, durable)"
    )


def run_pgbench(server: BenchServer, args: Sequence[str], dsn: str, *, pgoptions: str = "") -> str:
    """Run pgbench from the embedded server's bin folder; returns its stdout."""
    params = conninfo_to_dict(dsn)
    env = {
        **os.environ,
        "PGOPTIONS": pgoptions,
        "PGHOST": str(params.get("host", "127.0.0.1")),
        "PGPORT": str(params.get("port", "5432")),
        "PGUSER": str(params.get("user", "postgres")),
        "PGDATABASE": str(params["dbname"]),
    }
    result = subprocess.run(
        [str(server.bin_dir / "pgbench"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed: {result.stderr.strip()[-500:]}")
    return result.stdout


SettingsT = TypeVar("SettingsT")
ReportT = TypeVar("ReportT")


def run_on_fresh_server(
    run: Callable[[SettingsT, BenchServer], ReportT],
    render: Callable[[ReportT], str],
    settings: SettingsT,
) -> str:
    """One benchmark on a server of its own, started before and stopped after it: its tables."""
    with bench_server() as server:
        return render(run(settings, server))


def bench_main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None,
    run: Callable[[SettingsT, BenchServer], ReportT],
    render: Callable[[ReportT], str],
    full: SettingsT,
    quick: SettingsT,
) -> int:
    """The command line every engine benchmark has: ``[--quick] [--out FILE]``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args(argv)
    text = run_on_fresh_server(run, render, quick if args.quick else full)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0
