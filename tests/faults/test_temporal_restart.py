"""Restart the Temporal server while jobs flow: the workers reconnect and every job completes.

A dev server of its own, with its state in a SQLite file (``TemporalDevServer``), so workflow
histories, timers and task queues survive the restart. Restarts alternate between a graceful
stop (SIGTERM) and a crash (SIGKILL of its process group), each on the same port and file; two
worker processes and the test's own client must find the server again by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import psutil
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from devstack.postgres import free_port
from devstack.temporal import TemporalDevServer
from k8s.emulator import EmulatorServer
from tests.faults.conftest import (
    Experiment,
    Report,
    Scale,
    experiment,
    scaled_timeout,
)

pytestmark = scaled_timeout()


@pytest.fixture
async def temporal_lab(
    db_dsn: str, emulator: EmulatorServer, tmp_path: Path
) -> AsyncIterator[tuple[Experiment, TemporalDevServer]]:
    server = TemporalDevServer(
        tmp_path / "state", port=free_port(), ui_port=free_port(), headless=True
    )
    address = await asyncio.to_thread(server.start)
    try:
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        async with experiment(
            dsn=db_dsn, client=client, kube_url=emulator.url, logs=tmp_path, workers=2
        ) as lab:
            yield lab, server
    finally:
        server.stop()


def restart(server: TemporalDevServer, mode: str, down_seconds: float) -> None:
    pid = server.pid()
    assert pid is not None, "the dev server is not running"
    if mode == "crash":
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).wait(30)
    else:
        server.stop()
    assert not server.is_running()
    time.sleep(down_seconds)
    server.start()


async def test_temporal_restarts_workers_reconnect_and_jobs_complete(
    temporal_lab: tuple[Experiment, TemporalDevServer],
    scale: Scale,
    rng: random.Random,
    report: Report,
) -> None:
    lab, server = temporal_lab
    job_ids: list[UUID] = []
    per_restart = max(1, scale.temporal_jobs // scale.temporal_restarts)
    for number in range(scale.temporal_restarts):
        # A saga per saga pool under way across the restart, and a stream of lifecycles
        # submitted before it: they are at every stage of their life when it comes.
        sagas = await lab.start_sagas()
        streamed = await lab.submit([lab.random_lifecycle(rng) for _ in range(per_restart)])
        await asyncio.sleep(rng.uniform(0.0, 2.0))
        mode = "graceful" if number % 2 == 0 else "crash"
        down = rng.uniform(0.5, 3.0)
        began = time.monotonic()
        await asyncio.to_thread(restart, server, mode, down)
        report.append(
            "restarts",
            {"mode": mode, "down_s": round(down, 2), "outage_s": time.monotonic() - began},
        )
        # Submitted after it: the workers must be polling again for these to even start.
        streamed += await lab.submit([lab.random_lifecycle(rng) for _ in range(2)])
        await lab.finish(streamed, timeout=300)
        job_ids += streamed + await lab.finish_sagas(sagas)
    assert all(worker.alive for worker in lab.workers), "a worker died with the server"
    await lab.check(job_ids, report)
