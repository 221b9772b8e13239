"""``python -m bench.load`` still runs: its whole stack, at a tiny size, with small pools so
that jobs queue and preempt; its invariants hold. Structure only — never a timing."""

from __future__ import annotations

from dataclasses import replace

from bench.load import QUICK, PoolShape, load_cluster, render, run
from tests.faults.conftest import Report, Scale, scaled_timeout

pytestmark = scaled_timeout()


async def test_load_benchmark_runs_end_to_end_and_its_invariants_hold(
    scale: Scale, report: Report
) -> None:
    shape = replace(
        QUICK,
        jobs=scale.load_jobs,
        projects=6,
        teams=3,
        workers=2,
        in_flight=20,
        run_seconds=(0.1, 1.0),
        pools=(
            PoolShape("a100", gpu=6, cpu=64, share=0.5),
            PoolShape("h100", gpu=4, cpu=64, share=0.3),
            PoolShape("cpu", gpu=0, cpu=16, share=0.2),
        ),
    )
    async with load_cluster(shape) as cluster:
        result = await run(cluster, shape)
    report.add(
        jobs=shape.jobs,
        throughput=round(result.throughput, 2),
        sagas=result.sagas,
        violations=result.violations,
    )
    assert result.violations == []
    assert result.outcomes == {"SUCCEEDED": shape.jobs}
    assert len(result.admission["all"]) == len(result.completion) == shape.jobs
    assert all(result.peak_gpu.get(p.name, 0) <= p.gpu for p in shape.pools)
    text = render(result)
    assert "| admission, all |" in text and "Invariants: all held" in text
