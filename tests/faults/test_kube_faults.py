"""Kubernetes API faults during lifecycles and preemption sagas, with the outcomes of DESIGN §5:
5xx, timeouts and 429s are retried (a job never fails and a saga never gives up because of
them), a PodDisruptionBudget's 429 is retried until it allows the eviction or the saga's
deadline passes (then: compensation), 401/403 are not retried (compensation at once). In every
case every saga closes and nothing is left PREEMPTING.

One worker process and one database for the module (the scenarios run one after the other,
each checking the invariants over its own jobs); the emulator in-process, its faults injected
over its HTTP admin API as another process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from uuid import UUID

import pytest
from kubernetes.client import PolicyV1Api, V1LabelSelector, V1ObjectMeta, V1PodDisruptionBudget
from kubernetes.client import V1PodDisruptionBudgetSpec as PdbSpec
from temporalio.testing import WorkflowEnvironment

from k8s.config import api_client_from_settings
from k8s.emulator import EmulatorConfig, EmulatorServer, Fault
from k8s.pods import LABEL_POOL, pod_name
from tests.conftest import PgServer
from tests.faults.conftest import (
    SAGA_POOL_GPUS,
    SAGA_POOLS,
    Experiment,
    Report,
    Scale,
    experiment,
    fresh_database,
    scaled_timeout,
)
from tests.faults.harness import rows, wait_for

pytestmark = scaled_timeout()

# The sagas of this module give up on evictions after this long (DESIGN §5: "until a deadline").
DEADLINE_SECONDS = 15.0
# The worker's Kubernetes client gives up on a request after this long; delays are longer.
CLIENT_TIMEOUT_SECONDS = 2.0
SLOW_ANSWER_SECONDS = 3.0
# Victims run "forever": the saga always needs them; the test ends them once it is over.
VICTIM_RUN_SECONDS = 600.0


@pytest.fixture(scope="module")
def kube_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(config=EmulatorConfig(start_delay_seconds=0.05)) as server:
        yield server


@pytest.fixture(scope="module")
def kube_dsn(pg_server: PgServer, template_db: str) -> Iterator[str]:
    with fresh_database(pg_server, template_db) as dsn:
        yield dsn


@pytest.fixture(scope="module")
async def kube_lab(
    temporal_env: WorkflowEnvironment,
    kube_dsn: str,
    kube_emulator: EmulatorServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Experiment]:
    async with experiment(
        dsn=kube_dsn,
        client=temporal_env.client,
        kube_url=kube_emulator.url,
        logs=tmp_path_factory.mktemp("kube-faults"),
        eviction_deadline_seconds=DEADLINE_SECONDS,
        kube_request_timeout_seconds=CLIENT_TIMEOUT_SECONDS,
    ) as lab:
        yield lab


@pytest.fixture
def lab(kube_lab: Experiment, kube_emulator: EmulatorServer) -> Iterator[Experiment]:
    """The module's experiment, with no fault and no budget left over from another test."""
    kube_emulator.clear_faults()
    yield kube_lab
    kube_emulator.clear_faults()
    with policy_api(kube_lab) as policy:
        for budget in policy.list_namespaced_pod_disruption_budget("quotaflow").items:
            if budget.metadata is not None and budget.metadata.name:
                policy.delete_namespaced_pod_disruption_budget(budget.metadata.name, "quotaflow")


@contextlib.contextmanager
def policy_api(lab: Experiment) -> Iterator[PolicyV1Api]:
    api_client = api_client_from_settings(lab.settings)
    try:
        yield PolicyV1Api(api_client)
    finally:
        api_client.close()


def hold_pool(lab: Experiment, pool: str) -> str:
    """A budget that allows no disruption of the pool's pods: every eviction gets a 429."""
    name = f"hold-{pool}"
    with policy_api(lab) as policy:
        policy.create_namespaced_pod_disruption_budget(
            "quotaflow",
            V1PodDisruptionBudget(
                metadata=V1ObjectMeta(name=name),
                spec=PdbSpec(
                    max_unavailable=0,
                    selector=V1LabelSelector(match_labels={LABEL_POOL: pool}),
                ),
            ),
        )
    return name


def release(lab: Experiment, budget: str) -> None:
    with policy_api(lab) as policy:
        policy.delete_namespaced_pod_disruption_budget(budget, "quotaflow")


def statuses(lab: Experiment, job_ids: list[UUID]) -> Counter[str]:
    return Counter(
        r["s"]
        for r in rows(lab.db, "SELECT status::text AS s FROM jobs WHERE id = ANY(%s)", (job_ids,))
    )


def sagas_of(lab: Experiment, preemptor: UUID) -> list[dict[str, str]]:
    """The preemptor's sagas in the order they ran: status and reason."""
    return rows(
        lab.db,
        "SELECT status::text AS status, coalesce(reason, '') AS reason FROM preemptions "
        "WHERE preemptor_id = %s ORDER BY created_at",
        (preemptor,),
    )


def restored(lab: Experiment, job_id: UUID) -> bool:
    """Whether a compensation gave the job back its GPUs (PREEMPTING → RUNNING)."""
    return bool(
        rows(
            lab.db,
            "SELECT 1 FROM job_events WHERE job_id = %s AND from_status = 'PREEMPTING' "
            "AND to_status = 'RUNNING'",
            (job_id,),
        )
    )


def compensated(lab: Experiment, preemptor: UUID) -> Callable[[], bool]:
    return lambda: any(s["status"] == "COMPENSATED" for s in sagas_of(lab, preemptor))


async def victims_in(lab: Experiment, pools: tuple[str, ...]) -> dict[str, list[UUID]]:
    """Fill each pool with two low-priority jobs that would run for ever; wait until they run."""
    found: dict[str, list[UUID]] = {}
    for pool in pools:
        found[pool] = await lab.submit(
            [
                lab.spec(pool=pool, gpu=2, priority_class="low", run_seconds=VICTIM_RUN_SECONDS)
                for _ in range(SAGA_POOL_GPUS // 2)
            ]
        )
    every = [job for jobs in found.values() for job in jobs]
    await lab.wait_all(every, "RUNNING")
    return found


async def preemptors_for(lab: Experiment, pools: tuple[str, ...]) -> dict[str, UUID]:
    ids = await lab.submit(
        [
            lab.spec(pool=pool, gpu=SAGA_POOL_GPUS, priority_class="high", run_seconds=0.5)
            for pool in pools
        ]
    )
    return dict(zip(pools, ids, strict=True))


def transient_burst(rng: random.Random) -> list[Fault]:
    """A burst of everything a sick or overloaded API server does, in a random order."""
    faults = [
        Fault(endpoint="pods.create", status=500, times=2),
        Fault(endpoint="pods.create", status=503),
        Fault(endpoint="pods.create", status=429),  # API priority and fairness, no budget
        Fault(endpoint="pods.create", delay_seconds=SLOW_ANSWER_SECONDS, times=2),
        Fault(endpoint="pods.create", drop=True),
        Fault(endpoint="pods.get", status=500, times=3),
        Fault(endpoint="pods.get", delay_seconds=SLOW_ANSWER_SECONDS),
        Fault(endpoint="pods.evict", status=500, times=2),
        Fault(endpoint="pods.evict", status=503),
        Fault(endpoint="pods.evict", status=429),
        Fault(endpoint="pods.evict", delay_seconds=SLOW_ANSWER_SECONDS),
        Fault(endpoint="pods.evict", drop=True),
        Fault(endpoint="pods.list", status=500, times=2),
        Fault(endpoint="pods.watch", drop=True, after_events=1),
        Fault(endpoint="pods.watch", status=410),
    ]
    rng.shuffle(faults)
    return faults


async def test_5xx_429_and_slow_answers_are_retried_never_failing_a_job_or_a_saga(
    lab: Experiment, scale: Scale, rng: random.Random, report: Report
) -> None:
    job_ids: list[UUID] = []
    for _ in range(scale.kube_rounds):
        victims = await victims_in(lab, SAGA_POOLS)
        burst = transient_burst(rng)
        for fault in burst:
            lab.kube.add_fault(fault)
        streamed = await lab.submit([lab.random_lifecycle(rng) for _ in range(6)])
        preemptors = await preemptors_for(lab, SAGA_POOLS)
        await lab.finish([*streamed, *preemptors.values()], timeout=240)
        every_victim = [job for jobs in victims.values() for job in jobs]
        await lab.end_workloads(every_victim, timeout=240)
        round_ids = [*streamed, *preemptors.values(), *every_victim]
        # Retried, not failed: every job succeeded, every saga went through at its first try.
        assert lab.statuses(round_ids) == Counter({"SUCCEEDED": len(round_ids)})
        for preemptor in preemptors.values():
            assert [s["status"] for s in sagas_of(lab, preemptor)] == ["COMPLETED"]
        injected = sum(f.times for f in burst)
        left = sum(f.times for f in lab.kube.pending_faults())
        report.append("rounds", {"faults_injected": injected, "faults_hit": injected - left})
        lab.kube.clear_faults()
        job_ids += round_ids
    await lab.check(job_ids, report)


async def test_budget_429_storm_retried_until_allowed_or_compensated_at_the_deadline(
    lab: Experiment, scale: Scale, rng: random.Random, report: Report
) -> None:
    allowed_pool, held_pool = SAGA_POOLS
    job_ids: list[UUID] = []
    for _ in range(scale.kube_rounds):
        victims = await victims_in(lab, SAGA_POOLS)
        budgets = {pool: hold_pool(lab, pool) for pool in SAGA_POOLS}
        preemptors = await preemptors_for(lab, SAGA_POOLS)
        # One budget gives way before the deadline: the saga's 429s were retried until then.
        await lab.wait_all(victims[allowed_pool], "PREEMPTING")
        held_for = rng.uniform(1.0, 5.0)
        await asyncio.sleep(held_for)
        release(lab, budgets[allowed_pool])
        # The other holds past the deadline: compensated, the victims get their GPUs back.
        await wait_for(
            compensated(lab, preemptors[held_pool]),
            timeout=DEADLINE_SECONDS * 8,
            what="the held saga to be compensated",
        )
        release(lab, budgets[held_pool])
        await lab.finish(list(preemptors.values()), timeout=240)
        every_victim = [job for jobs in victims.values() for job in jobs]
        await lab.end_workloads(every_victim, timeout=240)

        assert [s["status"] for s in sagas_of(lab, preemptors[allowed_pool])] == ["COMPLETED"]
        held = sagas_of(lab, preemptors[held_pool])
        assert held[0]["status"] == "COMPENSATED", held
        # Temporal gives up retrying once the next backoff would pass the activity's deadline and
        # reports the last failure (the budget's 429); the saga's own timer says "deadline".
        assert "EvictionBlocked" in held[0]["reason"] or "deadline" in held[0]["reason"], held
        assert held[-1]["status"] == "COMPLETED", held  # a later saga, once the budget let go
        assert all(restored(lab, v) for v in victims[held_pool])
        report.append(
            "rounds",
            {"budget_held_s": round(held_for, 2), "held_pool_sagas": [s["status"] for s in held]},
        )
        job_ids += [*preemptors.values(), *every_victim]
    await lab.check(job_ids, report)


async def test_forbidden_and_unauthorized_evictions_are_compensated_not_retried(
    lab: Experiment, scale: Scale, rng: random.Random, report: Report
) -> None:
    job_ids: list[UUID] = []
    for _ in range(scale.kube_rounds):
        victims = await victims_in(lab, SAGA_POOLS)
        # One refusal each, aimed at one victim's pod: a retry would have gone through, so a
        # compensated saga proves the refusal was not retried.
        refused = {pool: rng.choice(victims[pool]) for pool in SAGA_POOLS}
        for pool, status in zip(SAGA_POOLS, (403, 401), strict=True):
            lab.kube.inject_fault("pods.evict", status=status, name=pod_name(refused[pool], 0))
        preemptors = await preemptors_for(lab, SAGA_POOLS)
        await lab.finish(list(preemptors.values()), timeout=240)
        every_victim = [job for jobs in victims.values() for job in jobs]
        await lab.end_workloads(every_victim, timeout=240)
        for pool, preemptor in preemptors.items():
            sagas = sagas_of(lab, preemptor)
            assert sagas[0]["status"] == "COMPENSATED", sagas
            assert "KubeForbidden" in sagas[0]["reason"], sagas
            assert sagas[-1]["status"] == "COMPLETED", sagas  # the next try, with no refusal
            assert restored(lab, refused[pool])
        report.append(
            "rounds",
            {pool: [s["status"] for s in sagas_of(lab, p)] for pool, p in preemptors.items()},
        )
        job_ids += [*preemptors.values(), *every_victim]
    await lab.check(job_ids, report)
