"""SIGKILL the worker at random points of job lifecycles and preemption sagas, restart it, and
check that nothing was lost, admitted twice, evicted twice, or left without its workflow.

Each round fills the two small saga pools with low-priority victims, then submits a stream of
mixed jobs to the main pool and a high-priority job per saga pool (one saga each), and kills the
worker once: on even rounds while a saga is under way (0–0.4 s after its reservation), on odd ones
at any moment after the submissions. The worker comes back after a random pause; whatever it
was doing is retried by Temporal once the lost activities time out.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from uuid import UUID

from tests.faults.conftest import (
    SAGA_POOL_GPUS,
    SAGA_POOLS,
    Experiment,
    Report,
    Scale,
    scaled_timeout,
)
from tests.faults.harness import ownership_violations, rows, wait_for

pytestmark = scaled_timeout()

# How long the victims run. When the kill may land before the dispatcher started the saga, long
# enough that the saga is still needed after the restart and the lost activities' timeouts (up
# to 30 s); the test ends them once the saga is over. When it lands mid-saga, short, so that
# some victims' pods end on their own while the worker is down (a victim that finishes during
# its eviction is a path of its own).
VICTIM_RUN_SECONDS = {"anytime": 120.0, "mid-saga": 5.0}


def saga_phase(experiment: Experiment, preemptor_id: UUID) -> str:
    """Where the preemptor's latest saga stands, as the database shows it."""
    sagas = rows(
        experiment.db,
        "SELECT status::text AS s FROM preemptions WHERE preemptor_id = %s "
        "ORDER BY created_at DESC LIMIT 1",
        (preemptor_id,),
    )
    if not sagas:
        return "not reserved yet"
    if sagas[0]["s"] != "ACTIVE":
        return f"already {sagas[0]['s'].lower()}"
    evicting = rows(
        experiment.db,
        "SELECT count(*) AS n FROM jobs WHERE preempted_by = %s AND status = 'PREEMPTING'",
        (preemptor_id,),
    )[0]["n"]
    return "evicting" if evicting else "victims requeued, admitting"


async def kill_moment(
    experiment: Experiment, highs: list[UUID], mid_saga: bool, rng: random.Random
) -> str:
    """Wait for the moment of this round's kill; returns how it was chosen."""
    if mid_saga:
        await wait_for(
            lambda: bool(
                rows(
                    experiment.db,
                    "SELECT 1 FROM preemptions WHERE preemptor_id = ANY(%s)",
                    (highs,),
                )
            ),
            timeout=120,
            what="a saga to reserve its victims",
            interval=0.05,
        )
        # A saga on a quiet machine is over within about half a second of its reservation.
        delay = rng.uniform(0.0, 0.4)
        await asyncio.sleep(delay)
        return f"{delay:.2f}s after a reservation"
    delay = rng.uniform(0.0, 4.0)
    await asyncio.sleep(delay)
    return f"{delay:.2f}s after the submissions"


@dataclass
class Round:
    victims: list[UUID]
    highs: list[UUID]
    streamed: list[UUID]
    note: dict[str, object]

    @property
    def job_ids(self) -> list[UUID]:
        return [*self.victims, *self.highs, *self.streamed]


async def one_round(
    lab: Experiment, rng: random.Random, *, lifecycles: int, mid_saga: bool
) -> Round:
    """Victims in, then the stream of lifecycles and the sagas while the worker is killed."""
    run_seconds = VICTIM_RUN_SECONDS["mid-saga" if mid_saga else "anytime"]
    victims = await lab.submit(
        [
            lab.spec(pool=pool, gpu=2, priority_class="low", run_seconds=run_seconds)
            for pool in SAGA_POOLS
            for _ in range(SAGA_POOL_GPUS // 2)
        ]
    )
    await lab.wait_all(victims, "RUNNING")

    async def sagas_and_kill() -> tuple[list[UUID], dict[str, object]]:
        highs = await lab.submit(
            [
                lab.spec(pool=pool, gpu=SAGA_POOL_GPUS, priority_class="high", run_seconds=0.5)
                for pool in SAGA_POOLS
            ]
        )
        moment = await kill_moment(lab, highs, mid_saga, rng)
        phases = [saga_phase(lab, h) for h in highs]
        lab.worker.kill()
        down = rng.uniform(0.0, 2.0)
        await asyncio.sleep(down)
        await lab.worker.start_ready()
        # Right after the restart, before anything had time to settle: every job still under
        # way has its workflow, every saga in the database has its workflow.
        orphans = await ownership_violations(lab.src)
        assert orphans == [], orphans
        return highs, {"kill": moment, "down_s": round(down, 2), "saga_phases_at_kill": phases}

    # The stream of lifecycles is still being submitted when the worker dies.
    streamed, (highs, note) = await asyncio.gather(
        lab.submit([lab.random_lifecycle(rng) for _ in range(lifecycles)], concurrency=4),
        sagas_and_kill(),
    )
    return Round(victims, highs, streamed, note)


async def test_sigkill_worker_at_random_points_loses_and_doubles_nothing(
    lab: Experiment, scale: Scale, rng: random.Random, report: Report
) -> None:
    per_round = math.ceil(scale.lifecycles / scale.kill_rounds)
    job_ids: list[UUID] = []
    highs: list[UUID] = []
    for round_no in range(scale.kill_rounds):
        started = time.monotonic()
        done = await one_round(lab, rng, lifecycles=per_round, mid_saga=round_no % 2 == 0)
        await lab.finish([*done.highs, *done.streamed], timeout=300)
        await lab.end_workloads(done.victims, timeout=300)
        report.append("rounds", done.note | {"round_s": round(time.monotonic() - started, 1)})
        job_ids += done.job_ids
        highs += done.highs
    assert lab.worker.kills == scale.kill_rounds
    # Every high-priority job got its GPUs (the pools were full of victims: through a saga).
    assert lab.statuses(highs) == Counter({"SUCCEEDED": len(highs)})
    saga_rows = rows(
        lab.db,
        "SELECT status::text AS s, count(*) AS n FROM preemptions "
        "WHERE preemptor_id = ANY(%s) GROUP BY 1",
        (highs,),
    )
    # Not asserted: a kill before the dispatcher started a saga can outlast the victims, and
    # then no saga is needed (mid-saga rounds did wait for a reservation before killing).
    report.add(kills=lab.worker.kills, high_priority_sagas={r["s"]: r["n"] for r in saga_rows})
    await lab.check(job_ids, report)
