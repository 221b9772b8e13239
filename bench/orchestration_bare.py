"""The yardstick of bench/orchestration.py: a bare Temporal workflow shaped like a job's.

``BareWorkflow`` is started the way a quotaflow job is (update-with-start, the update answering
once the first activity is done), then runs ``activities`` no-op activities one after another
and waits for ``signals`` signals, each sent by one of its own activities through the client —
as quotaflow's dispatcher and pod watcher signal job workflows from activities. No database,
no Kubernetes: what is left is the Temporal round trips and the Python SDK's work, which is the
orchestration ceiling a quotaflow worker on the same machine can approach.

It runs in a worker process of its own, configured like quotaflow's (same data converter, same
activity slots), so the two are measured side by side against one dev server::

    python -m bench.orchestration_bare --address 127.0.0.1:7233 --task-queue bare-bench
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ConfigDict, Field

    from workflows.sandbox import ensure_bytecode
    from workflows.shared import QF_STATUS

log = logging.getLogger("quotaflow.bench.bare")

# The quotaflow worker's settings (worker.py), so only the workflow's contents differ.
ACTIVITY_SLOTS = 64
STEP_TIMEOUT = timedelta(seconds=30)


class BareShape(BaseModel):
    """How many activities and self-signals one workflow makes (and the update that starts it)."""

    model_config = ConfigDict(frozen=True)

    activities: int = Field(ge=1, le=100)
    signals: int = Field(ge=0, le=100)
    # Search-attribute upserts (of QfStatus): one after each of the first activities, the rest
    # at the end — as a job upserts PENDING, ADMITTED, RUNNING and its final status.
    upserts: int = Field(default=0, ge=0, le=100)

    def signalling_steps(self) -> set[int]:
        """Which activities send a signal: spread evenly, the first one always among them."""
        if self.signals == 0:
            return set()
        steps = {(i * self.activities) // self.signals for i in range(self.signals)}
        if len(steps) < self.signals:
            raise ValueError("at most one signal per activity")
        return steps

    @property
    def label(self) -> str:
        label = f"{self.activities} activities, {self.signals} signals"
        return f"{label}, {self.upserts} upserts" if self.upserts else label


class BareStep(BaseModel):
    model_config = ConfigDict(frozen=True)

    workflow_id: str
    index: int
    signal: bool


class BareNudge(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int


class BareDone(BaseModel):
    model_config = ConfigDict(frozen=True)

    activities: int
    signals: int


class BareActivities:
    """The no-op activity; holds the client because some steps signal their own workflow."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="bare_step")
    async def step(self, step: BareStep) -> int:
        if step.signal:
            handle = self.client.get_workflow_handle(step.workflow_id)
            await handle.signal(BareWorkflow.nudge, BareNudge(index=step.index))
        return step.index


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    @workflow.init
    def __init__(self, shape: BareShape) -> None:
        self._done = 0
        self._nudges = 0

    @workflow.signal
    def nudge(self, nudge: BareNudge) -> None:
        self._nudges += 1

    def _nudged(self, count: int) -> bool:
        return self._nudges >= count

    @workflow.update
    async def submit(self, shape: BareShape) -> int:
        """Answers after the first activity, as ``JobWorkflow.submit`` does after record_job."""
        await workflow.wait_condition(lambda: self._done >= 1)
        return self._done

    def _upsert(self, index: int) -> None:
        workflow.upsert_search_attributes([QF_STATUS.value_set(f"STEP{index}")])

    @workflow.run
    async def run(self, shape: BareShape) -> BareDone:
        signalling = shape.signalling_steps()
        expected = 0
        for index in range(shape.activities):
            await workflow.execute_activity_method(
                BareActivities.step,
                BareStep(
                    workflow_id=workflow.info().workflow_id,
                    index=index,
                    signal=index in signalling,
                ),
                start_to_close_timeout=STEP_TIMEOUT,
            )
            self._done += 1
            if index < shape.upserts:
                self._upsert(index)
            if index in signalling:
                expected += 1
                await workflow.wait_condition(functools.partial(self._nudged, expected))
        for index in range(shape.activities, shape.upserts):
            self._upsert(index)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return BareDone(activities=self._done, signals=self._nudges)


async def start_bare(client: Client, task_queue: str, workflow_id: str, shape: BareShape) -> None:
    """Start one, as ``submit_job`` starts a job: update-with-start, answered after step 1."""
    start = WithStartWorkflowOperation(
        BareWorkflow.run,
        shape,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    await client.execute_update_with_start_workflow(
        BareWorkflow.submit, shape, start_workflow_operation=start
    )


async def bare_result(client: Client, workflow_id: str) -> BareDone:
    """Wait for its end, as ``job_result`` waits for a job's."""
    return await client.get_workflow_handle_for(BareWorkflow.run, workflow_id).result()


async def serve(address: str, namespace: str, task_queue: str) -> None:
    client = await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ensure_bytecode([BareWorkflow])  # as quotaflow's worker does: the yardstick is set up alike
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWorkflow],
        activities=[BareActivities(client).step],
        max_concurrent_activities=ACTIVITY_SLOTS,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )
    async with worker:
        log.info("bare worker ready on task queue %r", task_queue)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.orchestration_bare", description=__doc__)
    parser.add_argument("--address", required=True, help="host:port of the Temporal frontend")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args.address, args.namespace, args.task_queue))


if __name__ == "__main__":
    # Through the package name, so the workflow class the worker registers is the one the
    # sandbox re-imports (a class defined in ``__main__`` is not).
    from bench.orchestration_bare import main as bare_main

    bare_main()
