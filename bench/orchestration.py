"""Orchestration benchmarks: a job's whole life, and the preemption saga, on real processes.

1. **Lifecycle throughput.** N jobs are submitted as fast as the client allows (update-with-start,
   bounded concurrency) into a pool that never runs out of capacity, with emulator pods that run
   half a second; the rate is N / (first submit → last ``job_result``). Side by side, in the
   same run and against the same dev server, the same N of ``BareWorkflow`` (bench/orchestration_
   bare.py: no database, no Kubernetes) on a worker process of its own: once shaped like a job
   (3 activities, 2 signals — what a job workflow's history holds) and once as DESIGN §8's
   reference (6 activities, 1 signal). Rounds are interleaved (A B C, B C A, …) and repeated;
   the ratio is computed per round, so slow spells of the shared machine hit both sides.
2. **Saga latency.** A small pool is filled with low-priority jobs that run forever; a
   high-priority job that needs victims is submitted; latency = its submission → its
   ``admitted_at`` (the victims evicted through the Eviction API with a zero grace period and
   requeued, the preemptor admitted). Its stages come from the database's own timestamps. The
   preemptor is then cancelled, the victims run again, and the next saga starts.

Every run starts its own PostgreSQL, Temporal dev server, emulator and worker processes
(bench/orchestration_stack.py) and stops them at the end, also on error or Ctrl-C.

    python -m bench.orchestration            # 300 jobs × 3 interleaved rounds, 30 sagas
    python -m bench.orchestration --quick    # 20 jobs × 3 rounds, 5 sagas
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.common import markdown_table, median, percentile
from bench.orchestration_bare import BareShape, bare_result, start_bare
from bench.orchestration_stack import (
    BARE_QUEUE,
    LIFECYCLE_POOL,
    REPO,
    SAGA_POOL,
    Stack,
    StackOptions,
    bench_stack,
    sigterm_as_interrupt,
)
from workflows.client import cancel_job, job_result, submit_job
from workflows.shared import (
    CancelRequest,
    JobRequest,
    dispatcher_workflow_id,
    job_workflow_id,
)

# What a JobWorkflow's history holds for one job (record_job, start_pod, finish_job; the
# admitted and pod_ended signals) — counted again from the histories in every run and printed
# next to the results. (Before JobWorkflow revision 2 it also read the job after `admitted`:
# 4 activities.)
JOB_SHAPE = BareShape(activities=3, signals=2)
# The same, plus the four search-attribute upserts a job makes (PENDING, ADMITTED, RUNNING,
# final): how much of the gap is the Web UI's visibility rather than quotaflow's own work.
VISIBLE_JOB_SHAPE = BareShape(activities=3, signals=2, upserts=4)
DESIGN_SHAPE = BareShape(activities=6, signals=1)
SHAPES = [JOB_SHAPE, VISIBLE_JOB_SHAPE, DESIGN_SHAPE]
QUOTAFLOW = "quotaflow"
HISTORY_SAMPLE = 20
ACTIVE_SAGAS = "active sagas"


@dataclass(frozen=True)
class Config:
    jobs: int = 300
    rounds: int = 3
    warmup_jobs: int = 20
    concurrency: int = 50
    sagas: int = 30
    saga_victims: int = 2
    saga_fillers: int = 8
    # Long enough that start_pod (which polls every 0.2 s) sees the pod Running, so each job
    # takes the usual path — RUNNING, then the pod watcher's pod_ended signal — rather than
    # the shortcut for a pod that ended before it was seen running.
    run_seconds: float = 0.5
    round_timeout_seconds: float = 600.0
    stack: StackOptions = field(default_factory=StackOptions)


QUICK = Config(jobs=20, rounds=3, warmup_jobs=5, sagas=5)


# --- results ----------------------------------------------------------------------------------


@dataclass
class RoundResult:
    variant: str
    round: int
    jobs: int
    seconds: float
    latencies: list[float]  # per job: its submit call → its result at the client, seconds
    statuses: Counter[str]
    cpu: dict[str, float] = field(default_factory=dict)  # process → CPU seconds in the round

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else math.nan


@dataclass
class SagaSample:
    latency: float  # submit → admitted_at, seconds
    recorded: float  # submit → the job's row (record_job)
    reserved: float  # row → victims reserved (dispatcher woken, claim, check, saga started)
    evicted: float  # reserved → last victim requeued (notify, evict, wait gone, victim_gone)
    admitted: float  # last victim requeued → preemptor admitted
    victims: int


@dataclass
class ActivityTiming:
    queued: list[float] = field(default_factory=list)  # scheduled → started, seconds
    running: list[float] = field(default_factory=list)  # started → completed


@dataclass
class Profile:
    """Where a job's time goes, from sampled histories and the database's timestamps."""

    per_job_events: Counter[str] = field(default_factory=Counter)
    sampled_jobs: int = 0
    dispatcher_events: Counter[str] = field(default_factory=Counter)
    dispatcher_jobs: int = 0
    activities: dict[str, ActivityTiming] = field(default_factory=dict)
    workflow_task_queued: list[float] = field(default_factory=list)
    workflow_task_running: list[float] = field(default_factory=list)
    # Between the start_pod activity's end and the pod_ended signal: the pod watcher's delay.
    pod_end_to_signal: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Report:
    config: Config
    machine: str
    lifecycle: list[RoundResult] = field(default_factory=list)
    sagas: list[SagaSample] = field(default_factory=list)
    profile: Profile = field(default_factory=Profile)
    stuck_admitted: int = 0
    revision: str = ""
    started: str = ""
    seconds: float = 0.0

    def rounds_of(self, variant: str) -> list[RoundResult]:
        return [r for r in self.lifecycle if r.variant == variant]

    def ratios(self, bare: str) -> list[float]:
        """quotaflow / bare per round (each pair ran back to back)."""
        mine = {r.round: r.rate for r in self.rounds_of(QUOTAFLOW)}
        return [mine[r.round] / r.rate for r in self.rounds_of(bare) if r.round in mine]


# --- lifecycle ----------------------------------------------------------------------------------


async def timed_batch(
    count: int,
    concurrency: int,
    submit: Callable[[int], Awaitable[None]],
    wait: Callable[[int], Awaitable[str]],
) -> tuple[float, list[float], Counter[str]]:
    """Run ``count`` submissions (at most ``concurrency`` in flight) and wait for every end.

    Returns first submit → last end, each item's submit → end, and the final statuses.
    """
    gate = asyncio.Semaphore(concurrency)
    starts: list[float] = []
    ends: list[float] = []
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    async def one(index: int) -> None:
        async with gate:
            started = time.perf_counter()
            starts.append(started)
            await submit(index)
        status = await wait(index)
        ended = time.perf_counter()
        ends.append(ended)
        latencies.append(ended - started)
        statuses[status] += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    return max(ends) - min(starts), latencies, statuses


async def quotaflow_round(
    stack: Stack, config: Config, count: int
) -> tuple[float, list[float], Counter[str], list[UUID]]:
    ids = [uuid.uuid4() for _ in range(count)]

    async def submit(index: int) -> None:
        await submit_job(
            stack.client,
            stack.settings,
            JobRequest(
                job_id=ids[index],
                project_id=stack.world.team_id,
                actor="alice",
                gpu=1,
                pool=LIFECYCLE_POOL,
                priority_class="normal",
                name=f"bench-{index}",
                run_seconds=config.run_seconds,
            ),
        )

    async def wait(index: int) -> str:
        return (await job_result(stack.client, stack.settings, ids[index])).status

    seconds, latencies, statuses = await asyncio.wait_for(
        timed_batch(count, config.concurrency, submit, wait), config.round_timeout_seconds
    )
    return seconds, latencies, statuses, ids


async def bare_round(
    stack: Stack, config: Config, count: int, shape: BareShape
) -> tuple[float, list[float], Counter[str]]:
    run_id = uuid.uuid4().hex[:8]

    async def submit(index: int) -> None:
        await start_bare(stack.client, BARE_QUEUE, f"bare-{run_id}-{index}", shape)

    async def wait(index: int) -> str:
        await bare_result(stack.client, f"bare-{run_id}-{index}")
        return "COMPLETED"

    return await asyncio.wait_for(
        timed_batch(count, config.concurrency, submit, wait), config.round_timeout_seconds
    )


def variants() -> list[str]:
    return [QUOTAFLOW, *(f"bare: {shape.label}" for shape in SHAPES)]


def shape_of(variant: str) -> BareShape:
    return next(shape for shape in SHAPES if variant == f"bare: {shape.label}")


async def run_variant(
    stack: Stack, config: Config, variant: str, count: int
) -> tuple[float, list[float], Counter[str], list[UUID]]:
    if variant == QUOTAFLOW:
        return await quotaflow_round(stack, config, count)
    seconds, latencies, statuses = await bare_round(stack, config, count, shape_of(variant))
    return seconds, latencies, statuses, []


async def lifecycle(
    stack: Stack, config: Config, report: Report, log: Callable[[str], None]
) -> None:
    names = variants()
    for name in names:  # warm-up: first workflow tasks, connection pools, caches
        await run_variant(stack, config, name, config.warmup_jobs)
    for index in range(config.rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            await asyncio.sleep(1.0)  # let the previous variant's stragglers settle
            window_start = datetime.now(UTC)
            cpu_before = stack.cpu()
            seconds, latencies, statuses, ids = await run_variant(stack, config, name, config.jobs)
            cpu = {k: v - cpu_before[k] for k, v in stack.cpu().items()}
            window_end = datetime.now(UTC)
            result = RoundResult(name, index, config.jobs, seconds, latencies, statuses, cpu)
            report.lifecycle.append(result)
            log(f"round {index + 1}/{config.rounds} {name}: {result.rate:.1f}/s ({dict(statuses)})")
            if ids and index == 0:
                await profile_jobs(stack, ids, window_start, window_end, report.profile)


# --- where the time goes -------------------------------------------------------------------------


def _seconds(start: Any, end: Any) -> float:
    return (end.ToDatetime() - start.ToDatetime()).total_seconds()


async def history_events(client: Client, workflow_id: str, run_id: str | None = None) -> list[Any]:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    return list((await handle.fetch_history()).events)


async def profile_jobs(
    stack: Stack, ids: Sequence[UUID], since: datetime, until: datetime, profile: Profile
) -> None:
    """Count and time what sampled job histories and the dispatcher's did in one round."""
    prefix = stack.settings.workflow_id_prefix
    for job_id in ids[:HISTORY_SAMPLE]:
        events = await history_events(stack.client, job_workflow_id(job_id, prefix))
        profile.sampled_jobs += 1
        scheduled: dict[int, Any] = {}
        started: dict[int, Any] = {}
        workflow_task_scheduled: Any = None
        workflow_task_started: Any = None
        start_pod_done: Any = None
        for event in events:
            kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
            profile.per_job_events[kind] += 1
            if kind == "ACTIVITY_TASK_SCHEDULED":
                scheduled[event.event_id] = event
            elif kind == "ACTIVITY_TASK_STARTED":
                started[event.activity_task_started_event_attributes.scheduled_event_id] = event
            elif kind == "ACTIVITY_TASK_COMPLETED":
                ref = event.activity_task_completed_event_attributes.scheduled_event_id
                name = scheduled[ref].activity_task_scheduled_event_attributes.activity_type.name
                timing = profile.activities.setdefault(name, ActivityTiming())
                timing.queued.append(_seconds(scheduled[ref].event_time, started[ref].event_time))
                timing.running.append(_seconds(started[ref].event_time, event.event_time))
                if name == "start_pod":
                    start_pod_done = event.event_time
            elif kind == "WORKFLOW_TASK_SCHEDULED":
                workflow_task_scheduled = event.event_time
            elif kind == "WORKFLOW_TASK_STARTED" and workflow_task_scheduled is not None:
                workflow_task_started = event.event_time
                profile.workflow_task_queued.append(
                    _seconds(workflow_task_scheduled, workflow_task_started)
                )
            elif kind == "WORKFLOW_TASK_COMPLETED" and workflow_task_started is not None:
                profile.workflow_task_running.append(
                    _seconds(workflow_task_started, event.event_time)
                )
            elif kind == "WORKFLOW_EXECUTION_SIGNALED":
                signal = event.workflow_execution_signaled_event_attributes.signal_name
                if signal == "pod_ended" and start_pod_done is not None:
                    profile.pod_end_to_signal.append(_seconds(start_pod_done, event.event_time))
    # The dispatcher's share: every run of dispatcher-<pool>, events inside the round's window.
    dispatcher = dispatcher_workflow_id(LIFECYCLE_POOL, prefix)
    async for execution in stack.client.list_workflows(f"WorkflowId = '{dispatcher}'"):
        for event in await history_events(stack.client, dispatcher, execution.run_id):
            at = event.event_time.ToDatetime(tzinfo=UTC)
            if since <= at <= until:
                kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
                profile.dispatcher_events[kind] += 1
    profile.dispatcher_jobs += len(ids)
    await job_stages(stack, ids, profile)


async def job_stages(stack: Stack, ids: Sequence[UUID], profile: Profile) -> None:
    """Submit-side stages of each job, from the database's clock_timestamp() columns."""
    rows = await asyncio.to_thread(_stage_rows, stack, list(ids))
    for row in rows:
        for name, value in row.items():
            if value is not None:
                profile.stages.setdefault(name, []).append(float(value))


def _stage_rows(stack: Stack, ids: list[UUID]) -> list[dict[str, Any]]:
    with stack.store.db.connection() as conn:
        return list(
            conn.execute(
                """
                SELECT extract(epoch FROM j.admitted_at - j.created_at) AS "recorded → admitted",
                       extract(epoch FROM j.started_at - j.admitted_at) AS "admitted → RUNNING",
                       extract(epoch FROM j.finished_at - j.started_at) AS "RUNNING → SUCCEEDED"
                FROM jobs j WHERE j.id = ANY(%s)
                """,
                (ids,),
            ).fetchall()
        )


# --- saga ---------------------------------------------------------------------------------------


def _scalar(stack: Stack, statement: str, params: Sequence[Any]) -> Any:
    with stack.store.db.connection() as conn:
        row = conn.execute(statement, params).fetchone()
    assert row is not None
    return next(iter(row.values()))


def saga_pool_state(stack: Stack) -> dict[str, int]:
    with stack.store.db.connection() as conn:
        rows = conn.execute(
            """
            SELECT status::text AS status, (pod_name IS NOT NULL) AS has_pod, count(*) AS n
            FROM jobs WHERE pool = %s AND status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED')
            GROUP BY 1, 2
            """,
            (SAGA_POOL,),
        ).fetchall()
        active = conn.execute(
            "SELECT count(*) AS n FROM preemptions WHERE pool = %s AND status = 'ACTIVE'",
            (SAGA_POOL,),
        ).fetchone()
    state = {f"{r['status']}{'' if r['has_pod'] else ' (no pod)'}": int(r["n"]) for r in rows}
    state[ACTIVE_SAGAS] = int(active["n"]) if active else 0
    return state


async def wait_saga_pool_full(stack: Stack, fillers: int, timeout: float = 60.0) -> dict[str, int]:
    """Until every filler holds its GPU with a pod (RUNNING, or ADMITTED with its pod) again."""
    deadline = time.monotonic() + timeout
    while True:
        state = await asyncio.to_thread(saga_pool_state, stack)
        holding = state.get("RUNNING", 0) + state.get("ADMITTED", 0)
        jobs = sum(n for key, n in state.items() if key != ACTIVE_SAGAS)
        if holding == fillers and jobs == fillers and state[ACTIVE_SAGAS] == 0:
            return state
        if time.monotonic() > deadline:
            raise RuntimeError(f"the saga pool did not fill up again: {state}")
        await asyncio.sleep(0.05)


async def submit_saga_job(stack: Stack, *, gpu: int, priority_class: str, name: str) -> UUID:
    job_id = uuid.uuid4()
    await submit_job(
        stack.client,
        stack.settings,
        JobRequest(
            job_id=job_id,
            project_id=stack.world.team_id,
            actor="alice",
            gpu=gpu,
            pool=SAGA_POOL,
            priority_class=priority_class,
            name=name,
            run_seconds=None,  # runs until evicted or cancelled
        ),
    )
    return job_id


async def wait_status(stack: Stack, job_id: UUID, statuses: Sequence[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = await asyncio.to_thread(
            _scalar, stack, "SELECT status::text AS s FROM jobs WHERE id = %s", (job_id,)
        )
        if status in statuses:
            return str(status)
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} is {status}, not {' or '.join(statuses)}")
        await asyncio.sleep(0.05)


def saga_timeline(stack: Stack, job_id: UUID) -> dict[str, Any]:
    with stack.store.db.connection() as conn:
        row = conn.execute(
            """
            SELECT j.created_at, j.admitted_at, p.created_at AS reserved_at, p.status::text AS saga,
                   cardinality(p.victims) AS victims,
                   (SELECT max(e.at) FROM job_events e
                     WHERE e.job_id = ANY(p.victims) AND e.to_status = 'PREEMPTED'
                       AND e.at >= p.created_at) AS last_preempted_at,
                   (SELECT count(*) FROM job_events e
                     WHERE e.job_id = ANY(p.victims) AND e.to_status = 'PREEMPTED'
                       AND e.at >= p.created_at) AS preempted
            FROM jobs j JOIN preemptions p ON p.preemptor_id = j.id
            WHERE j.id = %s ORDER BY p.created_at DESC LIMIT 1
            """,
            (job_id,),
        ).fetchone()
    if row is None:
        raise RuntimeError(f"job {job_id} was admitted without a preemption saga")
    return dict(row)


async def one_saga(stack: Stack, config: Config, index: int) -> SagaSample:
    submitted = datetime.now(UTC)
    job_id = await submit_saga_job(
        stack, gpu=config.saga_victims, priority_class="high", name=f"saga-{index}"
    )
    await wait_status(stack, job_id, ("ADMITTED", "RUNNING"), timeout=60)
    t = await asyncio.to_thread(saga_timeline, stack, job_id)
    if t["saga"] != "COMPLETED" or t["preempted"] != t["victims"]:
        raise RuntimeError(f"saga of {job_id} did not evict its victims: {t}")
    sample = SagaSample(
        latency=(t["admitted_at"] - submitted).total_seconds(),
        recorded=(t["created_at"] - submitted).total_seconds(),
        reserved=(t["reserved_at"] - t["created_at"]).total_seconds(),
        evicted=(t["last_preempted_at"] - t["reserved_at"]).total_seconds(),
        admitted=(t["admitted_at"] - t["last_preempted_at"]).total_seconds(),
        victims=int(t["victims"]),
    )
    # Give the GPUs back: the requeued victims are admitted again and the pool refills.
    await wait_status(stack, job_id, ("RUNNING",), timeout=60)
    await cancel_job(stack.client, stack.settings, job_id, CancelRequest(actor="alice"))
    return sample


async def sagas(stack: Stack, config: Config, report: Report, log: Callable[[str], None]) -> None:
    fillers = config.saga_fillers
    for index in range(fillers):
        await submit_saga_job(stack, gpu=1, priority_class="low", name=f"filler-{index}")
    await wait_saga_pool_full(stack, fillers)
    # One unmeasured saga: the first PreemptionWorkflow's task and the victim query's plan.
    await one_saga(stack, config, -1)
    for index in range(config.sagas):
        await wait_saga_pool_full(stack, fillers)
        await asyncio.sleep(0.2)  # the refill's own wake-ups and notifications are over
        sample = await one_saga(stack, config, index)
        report.sagas.append(sample)
        log(f"saga {index + 1}/{config.sagas}: {sample.latency * 1000:.0f} ms")
    await wait_saga_pool_full(stack, fillers)
    # A requeued victim whose new pod runs but whose row never left ADMITTED (its start_pod
    # was interrupted by the old pod's late pod_ended signal) would still be ADMITTED here.
    await asyncio.sleep(2.0)
    state = await asyncio.to_thread(saga_pool_state, stack)
    report.stuck_admitted = state.get("ADMITTED", 0)


# --- statistics and output -------------------------------------------------------------------


def ms(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def render(report: Report) -> str:
    config = report.config
    options = config.stack
    out: list[str] = [
        f"Machine: {report.machine}. Code: {report.revision}. Run started {report.started}, "
        f"took {report.seconds:.0f} s.",
        "",
        f"### Lifecycle throughput ({config.jobs} jobs per round, {config.rounds} interleaved "
        f"rounds, ≤ {config.concurrency} submissions in flight)",
        "",
    ]
    rows: list[list[object]] = []
    for name in variants():
        results = report.rounds_of(name)
        rates = [r.rate for r in results]
        latencies = [x for r in results for x in r.latencies]
        rows.append(
            [
                name,
                " / ".join(f"{x:.1f}" for x in rates),
                f"**{median(rates):.1f}**",
                ms(percentile(latencies, 50)),
                ms(percentile(latencies, 99)),
            ]
        )
    out.append(
        markdown_table(
            ["workflows", "per round (/s)", "median (/s)", "p50 submit → end (ms)", "p99 (ms)"],
            rows,
        )
    )
    out.append("")
    ratio_rows = []
    for name in variants()[1:]:
        ratios = report.ratios(name)
        ratio_rows.append(
            [
                f"quotaflow / {name}",
                " / ".join(f"{x:.2f}" for x in ratios),
                f"**{median(ratios):.2f}×**",
                "met" if median(ratios) >= 0.7 else "**missed**",
            ]
        )
    out.append(markdown_table(["ratio", "per round", "median", "target ≥ 0.7×"], ratio_rows))
    statuses: Counter[str] = Counter()
    for r in report.rounds_of(QUOTAFLOW):
        statuses.update(r.statuses)
    out += ["", f"Final job statuses over the measured rounds: {dict(statuses)}.", ""]
    out += render_cpu(report)
    out += ["", *render_profile(report.profile, config.run_seconds)]
    out += [
        "",
        f"### Saga latency ({len(report.sagas)} sagas, {config.saga_victims} victims each, "
        f"pool of {config.saga_fillers} GPUs full of low-priority jobs)",
        "",
    ]
    samples = report.sagas
    saga_rows = [
        [label, ms(percentile(values, 50)), ms(percentile(values, 99))]
        for label, values in (
            ("**submit → admitted**", [s.latency for s in samples]),
            ("submit → recorded (record_job)", [s.recorded for s in samples]),
            ("recorded → victims reserved", [s.reserved for s in samples]),
            ("reserved → victims requeued", [s.evicted for s in samples]),
            ("requeued → preemptor admitted", [s.admitted for s in samples]),
        )
    ]
    out.append(markdown_table(["stage", "p50 (ms)", "p99 (ms)"], saga_rows))
    p50 = percentile([s.latency for s in samples], 50)
    out += [
        "",
        f"Target p50 ≤ 1 s: {'met' if p50 <= 1.0 else '**missed**'}. Victims evicted per saga: "
        f"{sorted({s.victims for s in samples})}. `QF_DISPATCHER_IDLE_SECONDS` = "
        f"{options.dispatcher_idle_seconds:g} (the submission wakes the dispatcher by signal).",
        f"Fillers left ADMITTED with a running pod at the end: {report.stuck_admitted}.",
        "",
        f"Settings: emulator start delay {options.start_delay_seconds:g} s, pods run "
        f"{config.run_seconds:g} s "
        f"(lifecycle) / until evicted (saga), eviction grace 0 s, claim batch "
        f"{options.claim_batch_size}, Temporal dev server store: {options.temporal_store}.",
    ]
    return "\n".join(out)


def render_cpu(report: Report) -> list[str]:
    """CPU milliseconds per workflow, by process (median over rounds): who is the bottleneck."""
    names = variants()
    processes = sorted({p for r in report.lifecycle for p in r.cpu})
    if not processes:
        return []

    def per_job(variant: str, process: str) -> float:
        return median([r.cpu.get(process, 0.0) / r.jobs for r in report.rounds_of(variant)])

    rows = [[p, *(ms(per_job(v, p)) for v in names)] for p in processes]
    totals = [median([sum(r.cpu.values()) / r.jobs for r in report.rounds_of(v)]) for v in names]
    rows.append(["**total**", *(f"**{ms(t)}**" for t in totals)])
    cores = os.cpu_count() or 1
    rows.append(["→ ceiling on this machine (/s)", *(f"{cores / t:.1f}" for t in totals)])
    return [
        "CPU time per workflow, by process (ms, median over rounds; the ceiling is cores / "
        "total, were the run CPU-bound and the machine ours alone):",
        "",
        markdown_table(["process", *names], rows),
        "",
    ]


def render_profile(profile: Profile, run_seconds: float) -> list[str]:
    if profile.sampled_jobs == 0:
        return []
    out = [
        f"Per job (mean of {profile.sampled_jobs} sampled histories of round 1), and the "
        "dispatcher's share (its events in that round / jobs):",
        "",
    ]
    n = profile.sampled_jobs
    d = max(1, profile.dispatcher_jobs)
    interesting = (
        "ACTIVITY_TASK_SCHEDULED",
        "WORKFLOW_EXECUTION_SIGNALED",
        "WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
        "WORKFLOW_TASK_COMPLETED",
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",
        "TIMER_STARTED",
    )
    out.append(
        markdown_table(
            ["history event", "job workflow", "dispatcher share"],
            [
                [
                    kind.lower(),
                    f"{profile.per_job_events[kind] / n:.2f}",
                    f"{profile.dispatcher_events[kind] / d:.2f}",
                ]
                for kind in interesting
            ],
        )
    )
    rows = [
        [
            name,
            len(t.running),
            ms(median(t.queued)),
            ms(percentile(t.queued, 99)),
            ms(median(t.running)),
            ms(percentile(t.running, 99)),
        ]
        for name, t in sorted(profile.activities.items())
    ]
    rows.append(
        [
            "(workflow tasks)",
            len(profile.workflow_task_running),
            ms(median(profile.workflow_task_queued)),
            ms(percentile(profile.workflow_task_queued, 99)),
            ms(median(profile.workflow_task_running)),
            ms(percentile(profile.workflow_task_running, 99)),
        ]
    )
    out += [
        "",
        markdown_table(
            ["activity", "n", "queued p50 (ms)", "queued p99", "ran p50 (ms)", "ran p99"],
            rows,
        ),
        "",
    ]
    stage_rows = [
        [name, ms(median(values)), ms(percentile(values, 99))]
        for name, values in profile.stages.items()
    ]
    stage_rows.append(
        [
            f"start_pod done → pod_ended signal (the pod runs {run_seconds:g} s of it)",
            ms(median(profile.pod_end_to_signal)),
            ms(percentile(profile.pod_end_to_signal, 99)),
        ]
    )
    out.append(
        markdown_table(
            ["stage (round 1, database and history clocks)", "p50 (ms)", "p99 (ms)"], stage_rows
        )
    )
    return out


PRODUCTION = ("workflows", "activities", "store", "k8s", "sql", "worker.py", "settings.py")


def code_revision() -> str:
    """The commit measured, and which production files differed from it (read-only git)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=30
        )
        return done.stdout.rstrip("\n")

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = git("status", "--porcelain", "--", *PRODUCTION).splitlines()
    if not changed:
        return f"commit {head}"
    files = ", ".join(line[3:] for line in changed)
    return f"commit {head} + uncommitted changes in {files}"


def machine_summary() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, load average at start {load}"
    )


# --- entry points --------------------------------------------------------------------------------


async def run(config: Config, log: Callable[[str], None] = print) -> Report:
    report = Report(config=config, machine=machine_summary(), revision=code_revision())
    report.started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    began = time.monotonic()
    options = replace(config.stack, saga_gpus=config.saga_fillers)
    async with bench_stack(options) as stack:
        log(f"stack up in {time.monotonic() - began:.1f} s (state in {stack.state})")
        try:
            if config.rounds > 0:
                await lifecycle(stack, config, report, log)
            if config.sagas > 0:
                await sagas(stack, config, report, log)
        except BaseException:
            log("quotaflow worker log:\n" + stack.quotaflow_worker.tail())
            raise
    report.seconds = time.monotonic() - began
    return report


def parse(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.orchestration", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="20 jobs × 3 rounds, 5 sagas")
    parser.add_argument("--jobs", type=int, help="jobs (and bare workflows) per round")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--sagas", type=int)
    parser.add_argument("--saga-victims", type=int)
    parser.add_argument("--idle-seconds", type=float, help="QF_DISPATCHER_IDLE_SECONDS")
    parser.add_argument("--temporal-store", choices=("tmpfs", "disk"))
    args = parser.parse_args(argv)
    config = QUICK if args.quick else Config()
    overrides = {
        k: v
        for k, v in {
            "jobs": args.jobs,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "sagas": args.sagas,
            "saga_victims": args.saga_victims,
        }.items()
        if v is not None
    }
    stack_overrides = {
        k: v
        for k, v in {
            "dispatcher_idle_seconds": args.idle_seconds,
            "temporal_store": args.temporal_store,
        }.items()
        if v is not None
    }
    return replace(config, **overrides, stack=replace(config.stack, **stack_overrides))


def main(argv: Sequence[str] | None = None) -> int:
    config = parse(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        with sigterm_as_interrupt():
            report = asyncio.run(run(config, log))
    except KeyboardInterrupt:
        log("interrupted: every process of the run was stopped")
        return 130
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
