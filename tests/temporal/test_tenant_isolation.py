"""A user with no binding on a subtree can neither read nor change it — through any command or
workflow. (Temporal queries are answered to whoever may use the namespace: other services that
call `describe` directly must be trusted for reads; starter.py checks before it asks.)"""

from __future__ import annotations

import asyncio
import uuid

from domain.errors import PermissionDenied
from domain.models import CreateUser
from tests.db.helpers import count
from tests.stack import ALICE_SUBMITS_A_LONG_JOB, Invoke, Stack, call, eventually, ok
from workflows.client import cancel_job, change_config, submit_job
from workflows.shared import CancelRequest, ConfigRequest, JobRequest

TABLES = [
    "projects",
    "resource_plans",
    "role_bindings",
    "config_commits",
    "config_blobs",
    "jobs",
    "job_events",
]


async def test_an_outsider_can_neither_read_nor_change_a_subtree(cli: Invoke, stack: Stack) -> None:
    stack.store.tenants.create_user(CreateUser(username="mallory"))
    stack.world.plan(stack.world.team, 8)
    root = ("--as", "root")
    commit = await ok(cli, *root, "config", "commit", "org/team", "-m", "c1", "--content", "{}")
    job = await ok(cli, *ALICE_SUBMITS_A_LONG_JOB)
    await stack.wait_status(job["job_id"], "RUNNING")
    plan_group = str(stack.store.plans.for_project(stack.world.team.p_id)[0].plan_group)
    before = {t: count(stack.store.db, t) for t in TABLES}

    as_mallory = ("--as", "mallory")
    attempts = [
        ["plan", "list", "org/team"],
        ["plan", "quota", "org/team"],
        ["plan", "add", "org/team", "GPU", "1", "Sun 01:00-02:00"],
        ["plan", "remove", plan_group],
        ["role", "list", "org/team"],
        ["role", "grant", "user:mallory", "admin", "org/team"],
        ["project", "tree", "org/team"],
        ["project", "create", "org/team/mine", "--owner", "mallory"],
        ["project", "move", "org/team", "org"],
        ["config", "log", "org/team"],
        ["config", "show", "org/team"],
        ["config", "diff", "org/team", "HEAD"],
        ["config", "commit", "org/team", "-m", "x", "--content", "{}"],
        ["config", "tag", "org/team", "mine"],
        ["config", "revert", "org/team", commit["commit_id"]],
        ["job", "submit", "org/team", "--gpu", "1", "--pool", "main"],
        ["job", "cancel", job["job_id"]],
        ["job", "describe", job["job_id"]],
        ["job", "why", job["job_id"]],
        ["job", "events", job["job_id"]],
    ]
    for args in attempts:
        code, _, err = await call(cli, *as_mallory, *args)
        assert code == 1, args
        assert "permission_denied" in err, (args, err)
    # what it may list shows nothing of the subtree
    assert await ok(cli, *as_mallory, "project", "tree") == []
    # Once visibility shows alice the running job, mallory's list must still be empty.
    await eventually(
        lambda: ok(cli, "--as", "alice", "job", "list"), what="the running job in alice's list"
    )
    assert await ok(cli, *as_mallory, "job", "list") == []

    # the workflows refuse it too, called directly as another service would
    settings = stack.settings
    for attempt in (
        submit_job(
            stack.client,
            settings,
            JobRequest(
                job_id=uuid.uuid4(),
                project_id=stack.world.team.p_id,
                actor="mallory",
                gpu=1,
                pool="main",
            ),
        ),
        cancel_job(
            stack.client, settings, uuid.UUID(job["job_id"]), CancelRequest(actor="mallory")
        ),
        change_config(
            stack.client,
            settings,
            ConfigRequest(
                op="commit",
                request_id=uuid.uuid4(),
                project_id=stack.world.team.p_id,
                actor="mallory",
                content={},
                message="x",
            ),
        ),
    ):
        try:
            await attempt
        except PermissionDenied:
            continue
        raise AssertionError("an outsider's request went through")
    assert {t: count(stack.store.db, t) for t in TABLES} == before
    assert (await asyncio.to_thread(stack.store.queue.get, job["job_id"])).status == "RUNNING"
