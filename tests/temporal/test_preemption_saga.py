"""Preemption end to end: the saga, its compensation, budgets, concurrency."""

from __future__ import annotations

import asyncio
from uuid import UUID

from kubernetes.client import PolicyV1Api, V1LabelSelector, V1ObjectMeta, V1PodDisruptionBudget
from kubernetes.client import V1PodDisruptionBudgetSpec as PdbSpec

from k8s.emulator import Fault
from tests.db.helpers import assert_counters_consistent
from tests.stack import Stack


async def fill_with_low_jobs(stack: Stack, count: int, gpu: int, run_seconds: float) -> list:
    stack.world.plan(stack.world.team, 100)
    jobs = [
        await stack.submit(gpu=gpu, priority_class="low", run_seconds=run_seconds)
        for _ in range(count)
    ]
    for job in jobs:
        await stack.wait_status(job.job_id, "RUNNING")
    return jobs


def preempted_count(stack: Stack, job_id: UUID) -> int:
    return sum(1 for e in stack.store.queue.events(job_id) if e.to_status == "PREEMPTED")


async def test_high_priority_job_preempts_the_fewest_and_victims_finish_later(
    stack: Stack,
) -> None:
    lows = await fill_with_low_jobs(stack, 4, gpu=2, run_seconds=4.0)
    high = await stack.submit(gpu=4, priority_class="high", run_seconds=0.5)
    done = await stack.result(high.job_id, timeout=60)
    assert done.status == "SUCCEEDED"
    victims = [j for j in lows if preempted_count(stack, j.job_id) == 1]
    assert len(victims) == 2  # 4 GPUs needed, 2 GPUs each: exactly two victims
    for job in lows:
        finished = await stack.result(job.job_id, timeout=60)
        assert finished.status == "SUCCEEDED"
        assert preempted_count(stack, job.job_id) <= 1
    for victim in victims:
        assert (await asyncio.to_thread(stack.store.queue.get, victim.job_id)).attempt == 1
    assert_counters_consistent(stack.store.db)


async def test_forbidden_eviction_is_compensated(stack: Stack) -> None:
    lows = await fill_with_low_jobs(stack, 2, gpu=4, run_seconds=30.0)
    stack.emulator.inject_fault("pods.evict", status=403, times=100)
    high = await stack.submit(gpu=4, priority_class="high", run_seconds=0.5)
    saga = await stack.saga(high.job_id)
    assert saga.outcome == "compensated" and "KubeForbidden" in saga.reason
    for job in lows:
        assert (await asyncio.to_thread(stack.store.queue.get, job.job_id)).status == "RUNNING"
    preemptor = await asyncio.to_thread(stack.store.queue.get, high.job_id)
    assert preemptor.status == "PENDING" and "KubeForbidden" in (preemptor.status_reason or "")
    with stack.store.db.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM jobs WHERE status = 'PREEMPTING'").fetchone()
    assert row is not None and row["n"] == 0
    assert_counters_consistent(stack.store.db)
    stack.emulator.clear_faults()


async def test_a_budget_blocked_eviction_is_retried_until_allowed(stack: Stack) -> None:
    lows = await fill_with_low_jobs(stack, 1, gpu=8, run_seconds=30.0)
    policy = PolicyV1Api(stack.kube.api_client)
    pdb = V1PodDisruptionBudget(
        metadata=V1ObjectMeta(name="keep-one"),
        spec=PdbSpec(
            min_available=1,
            selector=V1LabelSelector(match_labels={"app.kubernetes.io/managed-by": "quotaflow"}),
        ),
    )
    await asyncio.to_thread(policy.create_namespaced_pod_disruption_budget, "quotaflow", pdb)
    high = await stack.submit(gpu=8, priority_class="high", run_seconds=0.5)
    await asyncio.sleep(3)  # the saga meets 429s meanwhile
    assert (await asyncio.to_thread(stack.store.queue.get, lows[0].job_id)).status == "PREEMPTING"
    await asyncio.to_thread(policy.delete_namespaced_pod_disruption_budget, "keep-one", "quotaflow")
    done = await stack.result(high.job_id, timeout=60)
    assert done.status == "SUCCEEDED"
    assert preempted_count(stack, lows[0].job_id) == 1


async def test_two_preemptors_at_once_take_disjoint_victims(stack: Stack) -> None:
    lows = await fill_with_low_jobs(stack, 8, gpu=1, run_seconds=30.0)
    highs = await asyncio.gather(
        *[stack.submit(gpu=4, priority_class="high", run_seconds=0.5) for _ in range(2)]
    )
    results = await asyncio.gather(*[stack.result(h.job_id, timeout=90) for h in highs])
    assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED"]
    counts = [preempted_count(stack, j.job_id) for j in lows]
    assert sorted(counts) == [1] * 8  # all eight evicted, each exactly once
    sagas = [stack.store.preemption.for_job(h.job_id) for h in highs]
    victim_sets = [set(s[0]["victims"]) for s in sagas if s]
    assert len(victim_sets) == 2 and not victim_sets[0] & victim_sets[1]


__all__ = ["Fault"]
