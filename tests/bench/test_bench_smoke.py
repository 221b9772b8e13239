"""The benchmarks still run: each one's core function at a tiny size, on its own durable server.

Only structure is asserted — never a timing: the machine is shared and the numbers belong in
docs/en/benchmarks.md, produced by ``python -m bench.run_all``.
"""

from __future__ import annotations

from bench import claims, projects, victims
from bench.common import bench_server


def test_claims_benchmark_runs_every_variant_against_pgbench() -> None:
    variants = (claims.SINGLE, claims.BATCH)
    settings = claims.Settings(
        clients=(1,), seconds=1, rounds=1, pgbench_scale=1, variants=variants, profile_calls=20
    )
    with bench_server() as server:
        report = claims.run(settings, server)
    # pgbench before the first claim run and after each one
    assert len(report.pgbench[1]) == 1 + len(variants)
    assert all(tps > 0 for tps in report.pgbench[1])
    assert [(r.variant, r.clients) for r in report.runs] == [(v, 1) for v in variants]
    for run in report.runs:
        # the queue never ran dry, so every claim admitted a full batch
        assert run.claims > 0 and run.empty == 0
        assert run.jobs == run.claims * run.variant.limit
        assert len(run.latencies_ms) == run.claims
        assert run.reference_tps > 0
    # the profile: 0005 and 0004 claims, with and without the commit flush
    assert len(report.profiles) == 4
    assert all(p.function_ms > p.triggers_ms > 0 for p in report.profiles)
    text = claims.render(report)
    assert "| 1 | claim, limit 50 |" in text and "`pgbench -N`" in text


def test_victims_benchmark_prefix_and_naive_window_agree() -> None:
    settings = victims.Settings(sizes=(100, 300), needs=(1, 8), repeats=3, naive_repeats=2)
    with bench_server() as server:
        report = victims.run(settings, server)
    for size in settings.sizes:
        for need in settings.needs:
            prefix = report.cell(size, need, "prefix")
            naive = report.cell(size, need, "naive")
            unlocked = report.cell(size, need, "naive, no locks")
            assert len(prefix.samples_ms) == settings.repeats
            assert naive.candidates == unlocked.candidates > 0
            # the LIMITed prefix takes exactly the victims the window over everyone takes
            assert prefix.taken == naive.taken == unlocked.taken >= 1
    assert "| 300 | 8 |" in victims.render(report)


def test_projects_benchmark_methods_agree_and_moves_come_back() -> None:
    settings = projects.Settings(
        levels=(3,),
        subtree_levels=(2, 3),
        repeats=2,
        big_repeats=1,
        move_repeats=1,
        big_move_repeats=1,
        adjacency_move_repeats=2,
    )
    with bench_server() as server:
        report = projects.run(settings, server)
    # 111 projects: the whole tree below the root (110) and a 10-node subtree
    assert sorted({(d.projects, d.descendants) for d in report.descendants}) == [
        (111, 10),
        (111, 110),
    ]
    assert {d.method for d in report.descendants} == set(projects.METHODS)
    assert [(m.projects, m.moved) for m in report.moves] == [(111, 11)]
    assert len(report.moves[0].ltree_ms) == 2 and len(report.moves[0].adjacency_ms) == 4
    assert "#### MoveSubtree" in projects.render(report)
