"""Telling workflows things from activities, idempotently (the recipients dedupe)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar
from uuid import UUID

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from settings import Settings
from workflows.shared import (
    JOB_REVISION,
    AdmittedSignal,
    DispatcherInput,
    JobInput,
    WakeSignal,
    dispatcher_workflow_id,
    job_workflow_id,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


# Wakes coalesce per process and pool: the first is sent at once; those asked for while it is
# in flight, or within WAKE_DEBOUNCE after it, ride on one trailing wake. A burst of
# submissions (or job ends) then costs the dispatcher a few signals, not one each — and no wake
# is lost: the trailing one is sent after every asker's commit, so the dispatcher's next claim
# sees their jobs.
WAKE_DEBOUNCE = 0.05
_WakeKey = tuple[str, str, str]
_waking: set[_WakeKey] = set()
_wake_again: set[_WakeKey] = set()
_trailing: set[asyncio.Task[None]] = set()


async def wake_dispatcher(client: Client, settings: Settings, pool: str, reason: str) -> None:
    """Signal the pool's dispatcher, starting it if it is not running (signal-with-start)."""
    key = (settings.task_queue, settings.workflow_id_prefix, pool)
    if key in _waking:
        _wake_again.add(key)
        return
    _waking.add(key)
    try:
        await _send_wake(client, settings, pool, reason)
    except BaseException:
        _waking.discard(key)
        raise
    task = asyncio.get_running_loop().create_task(
        _trailing_wakes(key, client, settings, pool, reason)
    )
    _trailing.add(task)  # a reference, so the task is not collected before it ends
    task.add_done_callback(_trailing.discard)


async def _trailing_wakes(
    key: _WakeKey, client: Client, settings: Settings, pool: str, reason: str
) -> None:
    try:
        while True:
            await asyncio.sleep(WAKE_DEBOUNCE)
            if key not in _wake_again:
                return
            _wake_again.discard(key)
            try:
                await _send_wake(client, settings, pool, f"{reason} (and more)")
            except Exception:  # the dispatcher's own timer covers a lost wake
                log.warning("could not wake the dispatcher of %s", pool, exc_info=True)
                return
    finally:
        _waking.discard(key)


async def _send_wake(client: Client, settings: Settings, pool: str, reason: str) -> None:
    from workflows.dispatcher import DispatcherWorkflow

    await client.start_workflow(
        DispatcherWorkflow.run,
        DispatcherInput(
            pool=pool,
            workflow_id_prefix=settings.workflow_id_prefix,
            batch_size=settings.claim_batch_size,
            idle_seconds=settings.dispatcher_idle_seconds,
            reconcile_after_seconds=settings.reconcile_after_seconds,
            preemption_retry_seconds=settings.preemption_retry_seconds,
            eviction_deadline_seconds=settings.eviction_deadline_seconds,
            eviction_grace_seconds=settings.eviction_grace_seconds,
        ),
        id=dispatcher_workflow_id(pool, settings.workflow_id_prefix),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal="wake",
        start_signal_args=[WakeSignal(reason=reason)],
    )


async def tell_admitted(client: Client, settings: Settings, job_id: UUID, attempt: int) -> None:
    """Signal a job's workflow that it was admitted; start one to adopt the job if none runs."""
    from workflows.job import JobWorkflow

    await client.start_workflow(
        JobWorkflow.run,
        JobInput(job_id=job_id, poll_seconds=settings.job_poll_seconds, revision=JOB_REVISION),
        id=job_workflow_id(job_id, settings.workflow_id_prefix),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal="admitted",
        start_signal_args=[AdmittedSignal(attempt=attempt)],
    )


async def signal_job(
    client: Client, settings: Settings, job_id: UUID, signal: str, arg: object
) -> bool:
    """Signal a running job workflow; False when it is not running (nothing to tell)."""
    handle = client.get_workflow_handle(job_workflow_id(job_id, settings.workflow_id_prefix))
    try:
        await handle.signal(signal, arg)
        return True
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            log.debug("job %s has no running workflow; %s not delivered", job_id, signal)
            return False
        raise


async def gather_bounded(coros: list[Coroutine[Any, Any, T]], limit: int = 32) -> list[T]:
    """Run many client calls at once without opening hundreds of streams."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))
