"""Restart PostgreSQL while jobs flow: every workflow completes, nothing is applied twice.

The experiment runs its own embedded server (durable: with ``synchronous_commit=off`` an
immediate shutdown may lose commits the client was told about, and that would be a fault of the
test, not of quotaflow). Restarts alternate between a crash (SIGQUIT to the postmaster: what
``pg_ctl stop -m immediate`` sends; every backend dies, the restart replays the WAL) and a fast
shutdown (clients disconnected, a checkpoint), each on the same port and data folder, while a
stream of mixed jobs — some of which preempt others — is submitted and runs.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import psutil
import pytest
from temporalio.testing import WorkflowEnvironment

from devstack.postgres import EmbeddedPostgres, free_port
from k8s.emulator import EmulatorServer
from store.db import Database
from store.migrate import migrate
from tests.faults.conftest import Experiment, Report, Scale, experiment, scaled_timeout

pytestmark = scaled_timeout()

# The last restart of the full run keeps the server down well past the activities' longest
# retry interval (10 s), so retries are seen to back off and still come back.
LONG_OUTAGE_SECONDS = 25.0


@pytest.fixture
async def pg_lab(
    temporal_env: WorkflowEnvironment, emulator: EmulatorServer, tmp_path: Path
) -> AsyncIterator[tuple[Experiment, EmbeddedPostgres]]:
    server = EmbeddedPostgres(tmp_path / "pg", port=free_port(), durable=True)
    dsn = server.acquire()
    try:
        with Database(dsn, max_size=1) as db, db.connection() as conn:
            migrate(conn)
        async with experiment(
            dsn=dsn, client=temporal_env.client, kube_url=emulator.url, logs=tmp_path
        ) as lab:
            yield lab, server
    finally:
        server.stop()
        # As root the data folder may live under /var/tmp/quotaflow (devstack.postgres).
        if server.data_dir.parent != server.home:
            shutil.rmtree(server.data_dir.parent, ignore_errors=True)


def restart(server: EmbeddedPostgres, mode: str, down_seconds: float) -> None:
    """Stop the server (crash or fast shutdown), keep it down, start it on the same port."""
    if mode == "crash":
        pid = server.postmaster_pid()
        assert pid is not None, "the server is not running"
        os.kill(pid, signal.SIGQUIT)
        psutil.Process(pid).wait(60)
    else:
        server.stop()
    assert not server.is_running()
    time.sleep(down_seconds)
    server.acquire()


async def test_postgres_restarts_under_load_lose_and_double_nothing(
    pg_lab: tuple[Experiment, EmbeddedPostgres], scale: Scale, rng: random.Random, report: Report
) -> None:
    lab, server = pg_lab
    specs = [lab.random_lifecycle(rng) for _ in range(scale.pg_jobs)]
    # Submissions spread over the whole window of restarts, so some land while it is down.
    window = 12.0 * scale.pg_restarts
    offsets = sorted(rng.uniform(0.0, window) for _ in specs)

    async def feed() -> list[UUID]:
        started = time.monotonic()

        async def one(offset: float, index: int) -> list[UUID]:
            await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
            return await lab.submit([specs[index]])

        batches = await asyncio.gather(*(one(o, i) for i, o in enumerate(offsets)))
        return [job_id for batch in batches for job_id in batch]

    async def restarts() -> list[UUID]:
        saga_jobs: list[UUID] = []
        for number in range(scale.pg_restarts):
            # A saga per saga pool under way when the server goes down.
            sagas = await lab.start_sagas()
            await asyncio.sleep(rng.uniform(0.0, 3.0))
            mode = "crash" if number % 2 == 0 else "fast"
            last_of_many = scale.pg_restarts > 1 and number == scale.pg_restarts - 1
            down = LONG_OUTAGE_SECONDS if last_of_many else rng.uniform(0.5, 4.0)
            began = time.monotonic()
            await asyncio.to_thread(restart, server, mode, down)
            report.append(
                "restarts",
                {"mode": mode, "down_s": round(down, 2), "outage_s": time.monotonic() - began},
            )
            saga_jobs += await lab.finish_sagas(sagas)
        return saga_jobs

    streamed, saga_jobs = await asyncio.gather(feed(), restarts())
    await lab.finish(streamed, timeout=300 + 60 * scale.pg_restarts)
    assert len(streamed) == scale.pg_jobs
    await lab.check([*streamed, *saga_jobs], report)
