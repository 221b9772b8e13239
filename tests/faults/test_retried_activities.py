"""An activity whose worker dies after its transaction committed, but before Temporal heard of
it, runs again (after its timeout) — possibly much later, when the world has moved on. DESIGN §6:
"an activity retried after a crash changes nothing twice". Here the retry is the second call of
the saga's store steps, made after what a busy pool does in the meantime; no Temporal needed.

A retry that raises instead of answering "already done" is not harmless: ``IllegalTransition``
becomes a *non-retryable* activity failure, so a saga that had succeeded compensates. Both steps
below used to raise (found by these tests, fixed in eec9550).
"""

from __future__ import annotations

from domain.models import Job, JobStatus
from store import Store
from tests.db.helpers import assert_counters_consistent
from tests.factories import World, seed

ACTOR = "saga"


def running(world: World, gpu: int, priority_class: str = "low") -> Job:
    """A job admitted and running (its pod started)."""
    job = world.submit(gpu=gpu, priority_class=priority_class)
    assert job.id in world.store.queue.claim(world.pool, 10).admitted
    return world.store.queue.transition(
        job.id,
        JobStatus.RUNNING,
        from_statuses=[JobStatus.ADMITTED],
        reason="pod running",
        actor="test",
    )


def busy_pool(store: Store) -> tuple[World, list[Job]]:
    """8 GPUs held by two low-priority 4-GPU jobs, every job in quota."""
    world = seed(store, gpus=8)
    world.plan(world.root, 100)
    return world, [running(world, 4), running(world, 4)]


def test_victim_gone_retried_after_the_victim_was_admitted_again_answers_already(
    store: Store,
) -> None:
    world, lows = busy_pool(store)
    high = world.submit(gpu=4, priority_class="high")
    reserved = store.preemption.reserve(high.id, actor=ACTOR)
    [victim] = reserved.victims
    other = next(j for j in lows if j.id != victim.id)
    assert store.preemption.victim_gone(victim.id, high.id, actor=ACTOR) == "requeued"
    # The worker died before reporting that. Meanwhile the other job ends, and the dispatcher
    # admits the requeued victim on the GPUs it freed (the saga's hold keeps the victim's own).
    store.queue.transition(
        other.id,
        JobStatus.SUCCEEDED,
        from_statuses=[JobStatus.RUNNING],
        reason="done",
        actor="test",
    )
    assert victim.id in store.queue.claim(world.pool, 10).admitted
    # The retry, 30 s later: the eviction is done, the victim's new attempt is not ours to
    # touch. Raising here (non-retryably) would compensate the saga: the preemptor would lose
    # its reservation and a new saga would evict again.
    assert store.preemption.victim_gone(victim.id, high.id, actor=ACTOR) == "already"
    assert_counters_consistent(store.db)


def test_complete_retried_after_the_preemptor_finished_returns_the_job(store: Store) -> None:
    world, _ = busy_pool(store)
    high = world.submit(gpu=4, priority_class="high")
    [victim] = store.preemption.reserve(high.id, actor=ACTOR).victims
    store.preemption.victim_gone(victim.id, high.id, actor=ACTOR)
    assert store.preemption.complete(high.id, actor=ACTOR).status == JobStatus.ADMITTED
    # Not reported before the worker died; the dispatcher's reconcile tells the job anyway,
    # and it runs to its end before admit_preemptor is retried.
    for to, source in ((JobStatus.RUNNING, JobStatus.ADMITTED), (JobStatus.SUCCEEDED, None)):
        store.queue.transition(
            high.id,
            to,
            from_statuses=[source or JobStatus.RUNNING],
            reason="pod",
            actor="test",
        )
    # The retry: the saga did complete. Raising here (non-retryably) would make the saga run a
    # no-op compensation and report "compensated" for a preemption that went through.
    assert store.preemption.complete(high.id, actor=ACTOR).status == JobStatus.SUCCEEDED
    assert_counters_consistent(store.db)
