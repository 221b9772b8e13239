"""GetDescendants and MoveSubtree: ltree paths vs an adjacency list, at 10k / 100k / 1M projects.

Each tree (fan-out 10: 11,111 / 111,111 / 1,111,111 projects) lives in its own database of one
server. The big trees are built fast: ``projects`` takes the rows in one INSERT … SELECT with its
user triggers disabled (``ALTER TABLE … DISABLE TRIGGER USER``), so the benchmark computes each
``path`` itself with the same rule as the trigger (``qf_project_label(p_id)`` appended to the
parent's path) and inserts the ``project_usage`` rows the AFTER INSERT trigger would have; the
triggers are enabled again afterwards, and a check query proves every path consistent.

GetDescendants of a project with ~1k / ~10k / ~100k descendants, three ways:

* **btree range** — the production queries ``project_descendants`` and
  ``project_descendant_count`` (``sql/queries/projects.sql``): ``path > X AND path <
  qf_subtree_end(X)``, one range of a btree on ``path``;
* **GiST** — the same queries written ``d.path <@ p.path`` (what they were before migration 0005);
* **recursive CTE** — ``WITH RECURSIVE`` over ``parent_id`` (``projects_parent_idx``), the
  adjacency-list baseline;

each measured three ways: ``count(*)`` server-side, the row query's server execution time
(``EXPLAIN (ANALYZE, TIMING OFF)``: every row built, none sent), and through psycopg with every row
transferred and decoded.

MoveSubtree: ``store.topology.ProjectStore.move`` (``LOCK TABLE project_usage IN EXCLUSIVE MODE``
then one UPDATE rewriting every path of the subtree; the projects triggers check the result and
move the usage) against an adjacency list (a mirror table ``adjacency_projects`` with the same rows
but no path): a recursive walk up from the new parent to refuse a cycle, then one UPDATE of one
``parent_id``. Each move is a committed transaction; the subtree goes there and back.

    python -m bench.projects            # 10k / 100k / 1M projects (the 1M tree takes ~2 min)
    python -m bench.projects --quick    # smoke run on tiny trees
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from bench.common import (
    BenchServer,
    bench_main,
    fmt,
    machine_summary,
    markdown_table,
    median,
    percentile,
    time_calls,
)
from store.db import Database
from store.migrate import migrate
from store.queries import all_queries
from store.topology import ProjectStore

FANOUT = 10

GIST_ROWS = """
SELECT d.p_id, d.parent_id, d.owner_id, d.name, d.path::text AS path, d.created_at
FROM projects d, projects p
WHERE p.p_id = %(project_id)s AND d.path <@ p.path AND d.p_id <> p.p_id
ORDER BY d.path
"""
GIST_COUNT = """
SELECT count(*) AS n
FROM projects d, projects p
WHERE p.p_id = %(project_id)s AND d.path <@ p.path AND d.p_id <> p.p_id
"""
RECURSIVE_ROWS = """
WITH RECURSIVE sub AS (
    SELECT p_id, parent_id, owner_id, name, created_at
    FROM projects WHERE parent_id = %(project_id)s
    UNION ALL
    SELECT c.p_id, c.parent_id, c.owner_id, c.name, c.created_at
    FROM projects c JOIN sub s ON c.parent_id = s.p_id
)
SELECT p_id, parent_id, owner_id, name, created_at FROM sub
"""
RECURSIVE_COUNT = """
WITH RECURSIVE sub AS (
    SELECT p_id FROM projects WHERE parent_id = %(project_id)s
    UNION ALL
    SELECT c.p_id FROM projects c JOIN sub s ON c.parent_id = s.p_id
)
SELECT count(*) AS n FROM sub
"""
# The adjacency-list move: refuse a new parent inside the subtree (walk up from it), then
# re-point one row.
ADJACENCY_CYCLE = """
WITH RECURSIVE up AS (
    SELECT p_id, parent_id FROM adjacency_projects WHERE p_id = %(new_parent_id)s
    UNION ALL
    SELECT a.p_id, a.parent_id FROM adjacency_projects a JOIN up ON a.p_id = up.parent_id
)
SELECT coalesce(bool_or(p_id = %(project_id)s), false) AS cycle FROM up
"""
ADJACENCY_MOVE = """
UPDATE adjacency_projects SET parent_id = %(new_parent_id)s WHERE p_id = %(project_id)s
"""

METHODS = ("btree range", "GiST", "recursive CTE")


def statements() -> dict[str, tuple[str, str]]:
    """(count, rows) statement of each method; the production ones read from projects.sql."""
    queries = all_queries()
    return {
        "btree range": (queries["project_descendant_count"], queries["project_descendants"]),
        "GiST": (GIST_COUNT, GIST_ROWS),
        "recursive CTE": (RECURSIVE_COUNT, RECURSIVE_ROWS),
    }


@dataclass(frozen=True)
class Settings:
    # levels of a tree: 5 → 11,111 projects, 6 → 111,111, 7 → 1,111,111
    levels: tuple[int, ...] = (5, 6, 7)
    # levels of a measured subtree: 4 → 1,110 descendants, 5 → 11,110, 6 → 111,110
    subtree_levels: tuple[int, ...] = (4, 5, 6)
    repeats: int = 15
    big_repeats: int = 5
    move_repeats: int = 3
    big_move_repeats: int = 1
    adjacency_move_repeats: int = 50


QUICK = Settings(
    levels=(3, 4),
    subtree_levels=(2, 3),
    repeats=3,
    big_repeats=2,
    move_repeats=1,
    big_move_repeats=1,
    adjacency_move_repeats=5,
)


@dataclass
class Descendants:
    projects: int
    descendants: int
    method: str
    count_ms: list[float]
    server_rows_ms: list[float]
    client_rows_ms: list[float]
    plan: str


@dataclass
class Move:
    projects: int
    moved: int
    ltree_ms: list[float]
    adjacency_ms: list[float]


@dataclass
class ProjectsReport:
    settings: Settings
    machine: str
    build_seconds: dict[int, float] = field(default_factory=dict)
    descendants: list[Descendants] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)

    def of(self, projects: int, descendants: int, method: str) -> Descendants:
        return next(
            d
            for d in self.descendants
            if (d.projects, d.descendants, d.method) == (projects, descendants, method)
        )


def tree_size(levels: int) -> int:
    return sum(FANOUT**k for k in range(levels))


# --- building a tree -------------------------------------------------------------------------


def build_tree(conn: psycopg.Connection[Any], levels: int) -> UUID:
    """A tree of ``levels`` levels, fan-out 10, in one INSERT; returns the root's id."""
    owner = conn.execute(
        "INSERT INTO resource_owners (kind) VALUES ('user') RETURNING id"
    ).fetchone()
    assert owner is not None
    conn.execute("INSERT INTO users (id, username) VALUES (%s, 'bench')", (owner[0],))
    conn.execute(
        "CREATE TEMP TABLE new_projects (p_id uuid, parent_id uuid, name text, path ltree)"
    )
    conn.execute(
        "INSERT INTO new_projects SELECT id, NULL, 'root', qf_project_label(id) "
        "FROM gen_random_uuid() AS id"
    )
    for level in range(1, levels):
        # gen_random_uuid() sits in a sub-SELECT so that each row gets its own id.
        conn.execute(
            """
            INSERT INTO new_projects
            SELECT s.id, s.parent_id, 'n' || s.g, s.parent_path || qf_project_label(s.id)
            FROM (SELECT gen_random_uuid() AS id, p.p_id AS parent_id, p.path AS parent_path, g
                  FROM new_projects p CROSS JOIN generate_series(1, %(fanout)s) AS g
                  WHERE nlevel(p.path) = %(level)s) AS s
            """,
            {"fanout": FANOUT, "level": level},
        )
    # In path order, so the btree indexes on path fill their pages left to right, as a tree
    # that grew over time and was then reindexed would have them.
    conn.execute("ALTER TABLE projects DISABLE TRIGGER USER")
    conn.execute(
        "INSERT INTO projects (p_id, parent_id, owner_id, name, path) "
        "SELECT p_id, parent_id, %s, name, path FROM new_projects ORDER BY path",
        (owner[0],),
    )
    conn.execute("INSERT INTO project_usage (project_id) SELECT p_id FROM new_projects")
    conn.execute("ALTER TABLE projects ENABLE TRIGGER USER")
    root = conn.execute("SELECT p_id FROM new_projects WHERE parent_id IS NULL").fetchone()
    conn.execute("DROP TABLE new_projects")
    conn.commit()
    bad = conn.execute(
        "SELECT count(*) FROM projects d LEFT JOIN projects p ON p.p_id = d.parent_id "
        "WHERE d.path IS DISTINCT FROM coalesce(p.path, ''::ltree) || qf_project_label(d.p_id)"
    ).fetchone()
    if bad is None or bad[0] != 0:
        raise RuntimeError(f"the bulk-built tree has {bad} inconsistent paths")
    assert root is not None
    return UUID(str(root[0]))


def build_adjacency_mirror(conn: psycopg.Connection[Any]) -> None:
    """The adjacency-list model of the same tree: no path, a parent index, the same keys."""
    conn.execute(
        """
        CREATE TABLE adjacency_projects (
            p_id        uuid        PRIMARY KEY,
            parent_id   uuid        REFERENCES adjacency_projects (p_id),
            owner_id    uuid        NOT NULL,
            name        text        NOT NULL,
            created_at  timestamptz NOT NULL,
            CHECK (parent_id IS DISTINCT FROM p_id),
            UNIQUE NULLS NOT DISTINCT (parent_id, name)
        )
        """
    )
    conn.execute("CREATE INDEX adjacency_projects_parent_idx ON adjacency_projects (parent_id)")
    conn.execute(
        "INSERT INTO adjacency_projects SELECT p_id, parent_id, owner_id, name, created_at "
        "FROM projects ORDER BY path"
    )
    conn.commit()


def vacuum(conn: psycopg.Connection[Any]) -> None:
    conn.commit()
    previous = conn.autocommit
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    conn.autocommit = previous


def node_at_depth(conn: psycopg.Connection[Any], depth: int) -> tuple[UUID, UUID | None]:
    """Some project ``depth`` levels below the root (0: the root), and its parent."""
    row = conn.execute(
        "SELECT p_id, parent_id FROM projects WHERE nlevel(path) = %s ORDER BY p_id LIMIT 1",
        (depth + 1,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


# --- measuring -------------------------------------------------------------------------------


def _scan_nodes(plan: dict[str, Any]) -> list[str]:
    """The scans of a plan, e.g. ``Index Only Scan projects_path_btree``."""
    found: list[str] = []
    if "Scan" in plan["Node Type"] and plan.get("Relation Name") == "projects":
        found.append(f"{plan['Node Type']} {plan.get('Index Name', '')}".strip())
    for child in plan.get("Plans", []):
        found.extend(_scan_nodes(child))
    return found


def _explain(conn: psycopg.Connection[Any], statement: str, params: dict[str, Any]) -> Any:
    row = conn.execute(
        "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + statement,
        params,
    ).fetchone()
    assert row is not None
    return row[0][0]


def measure_descendants(
    conn: psycopg.Connection[Any], projects: int, node: UUID, repeats: int
) -> list[Descendants]:
    params = {"project_id": node}
    results: list[Descendants] = []
    sizes: set[int] = set()
    for method, (count_sql, rows_sql) in statements().items():

        def count(count_sql: str = count_sql) -> int:
            row = conn.execute(count_sql, params).fetchone()
            assert row is not None
            return int(row[0])

        def server_rows(rows_sql: str = rows_sql) -> Any:
            return _explain(conn, rows_sql, params)

        def client_rows(rows_sql: str = rows_sql) -> int:
            return len(conn.execute(rows_sql, params).fetchall())

        sizes.update({count(), client_rows()})
        explained = [server_rows() for _ in range(repeats)]
        results.append(
            Descendants(
                projects,
                count(),
                method,
                count_ms=time_calls(count, repeats, warmup=1),
                server_rows_ms=[e["Execution Time"] for e in explained],
                client_rows_ms=time_calls(client_rows, repeats, warmup=1),
                plan=", ".join(sorted(set(_scan_nodes(explained[0]["Plan"])))),
            )
        )
    if len(sizes) != 1:
        raise RuntimeError(f"the methods disagree on the subtree of {node}: sizes {sizes}")
    return results


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def measure_move(
    server_dsn: str,
    conn: psycopg.Connection[Any],
    projects: int,
    node: UUID,
    parent: UUID,
    target: UUID,
    repeats: int,
    adjacency_repeats: int,
) -> Move:
    # Siblings have distinct names: give the moving project one no sibling has anywhere.
    conn.execute("UPDATE projects SET name = 'bench-moved' WHERE p_id = %s", (node,))
    conn.execute("UPDATE adjacency_projects SET name = 'bench-moved' WHERE p_id = %s", (node,))
    conn.commit()
    db = Database(server_dsn, min_size=1, max_size=1)
    try:
        store = ProjectStore(db)
        moved = store.move(node, target)
        store.move(node, parent)
        ltree_ms: list[float] = []
        for _ in range(repeats):
            ltree_ms.append(_timed(lambda: store.move(node, target)))
            ltree_ms.append(_timed(lambda: store.move(node, parent)))
    finally:
        db.close()

    def adjacency_move(new_parent: UUID) -> None:
        params = {"project_id": node, "new_parent_id": new_parent}
        row = conn.execute(ADJACENCY_CYCLE, params).fetchone()
        if row is None or row[0]:
            raise RuntimeError("the adjacency baseline found a cycle where there is none")
        conn.execute(ADJACENCY_MOVE, params)
        conn.commit()

    adjacency_ms: list[float] = []
    adjacency_move(target)
    adjacency_move(parent)
    for _ in range(adjacency_repeats):
        adjacency_ms.append(_timed(lambda: adjacency_move(target)))
        adjacency_ms.append(_timed(lambda: adjacency_move(parent)))
    return Move(projects, moved, ltree_ms, adjacency_ms)


def move_target(conn: psycopg.Connection[Any], node: UUID, parent: UUID, depth: int) -> UUID:
    """A new parent for ``node``: a cousin of its parent (same depth) or, at depth 1, a sibling."""
    if depth >= 2:
        row = conn.execute(
            "SELECT p_id FROM projects WHERE nlevel(path) = %s AND p_id <> %s "
            "ORDER BY p_id LIMIT 1",
            (depth, parent),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT p_id FROM projects WHERE parent_id = %s AND p_id <> %s ORDER BY p_id LIMIT 1",
            (parent, node),
        ).fetchone()
    assert row is not None
    return UUID(str(row[0]))


def run(settings: Settings, server: BenchServer) -> ProjectsReport:
    report = ProjectsReport(settings, machine_summary(server))
    for levels in settings.levels:
        projects = tree_size(levels)
        dsn = server.create_database(f"tree_{levels}")
        with psycopg.connect(dsn) as conn:
            migrate(conn)
            started = time.perf_counter()
            build_tree(conn, levels)
            build_adjacency_mirror(conn)
            vacuum(conn)
            report.build_seconds[projects] = time.perf_counter() - started
            for sub_levels in settings.subtree_levels:
                depth = levels - sub_levels
                if depth < 0:
                    continue
                big = tree_size(sub_levels) > 50_000
                node, parent = node_at_depth(conn, depth)
                report.descendants.extend(
                    measure_descendants(
                        conn, projects, node, settings.big_repeats if big else settings.repeats
                    )
                )
                conn.rollback()
            for sub_levels in settings.subtree_levels:
                depth = levels - sub_levels
                if depth < 1:
                    continue
                big = tree_size(sub_levels) > 50_000
                node, parent = node_at_depth(conn, depth)
                assert parent is not None
                target = move_target(conn, node, parent, depth)
                report.moves.append(
                    measure_move(
                        dsn,
                        conn,
                        projects,
                        node,
                        parent,
                        target,
                        settings.big_move_repeats if big else settings.move_repeats,
                        settings.adjacency_move_repeats,
                    )
                )
        with server.admin() as admin:
            admin.execute(f'DROP DATABASE "tree_{levels}" WITH (FORCE)')
    return report


def render(report: ProjectsReport) -> str:
    settings = report.settings
    built = ", ".join(
        f"{n:,} projects in {s:.0f} s" for n, s in sorted(report.build_seconds.items())
    )
    count_rows: list[list[str]] = []
    rows_rows: list[list[str]] = []
    plans: dict[tuple[int, int, str], str] = {}
    keys = sorted({(d.projects, d.descendants) for d in report.descendants})
    for projects, size in keys:
        base = report.of(projects, size, "recursive CTE")
        for method in METHODS:
            d = report.of(projects, size, method)
            plans[(projects, size, method)] = d.plan
            count_rows.append(
                [
                    f"{projects:,}",
                    f"{size:,}",
                    method,
                    fmt(median(d.count_ms), 3),
                    fmt(percentile(d.count_ms, 99), 3),
                    fmt(median(base.count_ms) / median(d.count_ms), 1),
                    fmt(median(d.server_rows_ms), 3),
                    fmt(median(base.server_rows_ms) / median(d.server_rows_ms), 1),
                ]
            )
            rows_rows.append(
                [
                    f"{projects:,}",
                    f"{size:,}",
                    method,
                    fmt(median(d.client_rows_ms), 3),
                    fmt(percentile(d.client_rows_ms, 99), 3),
                    fmt(median(base.client_rows_ms) / median(d.client_rows_ms), 1),
                ]
            )
    server_table = markdown_table(
        [
            "projects",
            "descendants",
            "method",
            "count p50 ms",
            "count p99 ms",
            "count: × faster than recursion",
            "rows, server p50 ms",
            "rows, server: × faster than recursion",
        ],
        count_rows,
    )
    client_table = markdown_table(
        [
            "projects",
            "descendants",
            "method",
            "rows via psycopg p50 ms",
            "p99 ms",
            "× faster than recursion",
        ],
        rows_rows,
    )
    largest = max(keys)
    plan_lines = "\n".join(
        f"- {method}: {plans[(largest[0], largest[1], method)]}" for method in METHODS
    )
    move_table = markdown_table(
        [
            "projects",
            "moved projects",
            "ltree move p50 ms",
            "ltree p99 ms",
            "adjacency move p50 ms",
            "adjacency p99 ms",
            "ltree / adjacency",
        ],
        [
            [
                f"{m.projects:,}",
                f"{m.moved:,}",
                fmt(median(m.ltree_ms)),
                fmt(percentile(m.ltree_ms, 99)),
                fmt(median(m.adjacency_ms), 3),
                fmt(percentile(m.adjacency_ms, 99), 3),
                fmt(median(m.ltree_ms) / median(m.adjacency_ms), 0),
            ]
            for m in report.moves
        ],
    )
    return (
        f"### GetDescendants and MoveSubtree\n\n{report.machine}; trees built (with the "
        f"adjacency mirror, vacuumed): {built}. GetDescendants: {settings.repeats} calls per "
        f"cell ({settings.big_repeats} for 100k-node subtrees); moves: {settings.move_repeats} "
        f"there-and-back pairs ({settings.big_move_repeats} for 100k), adjacency: "
        f"{settings.adjacency_move_repeats} pairs.\n\n"
        f"#### GetDescendants, server-side\n\n{server_table}\n\n"
        f"Scans of `projects` at the largest size ({largest[1]:,} of {largest[0]:,}):\n"
        f"{plan_lines}\n\n"
        f"#### GetDescendants through psycopg (every row sent and decoded)\n\n{client_table}\n\n"
        f"#### MoveSubtree\n\n{move_table}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(
        argv,
        prog="python -m bench.projects",
        description=__doc__,
        run=run,
        render=render,
        full=Settings(),
        quick=QUICK,
    )


if __name__ == "__main__":
    sys.exit(main())
