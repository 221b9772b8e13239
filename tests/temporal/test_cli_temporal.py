"""starter.py's workflow-backed commands, in-process, against the test stack."""

from __future__ import annotations

import asyncio

from domain.models import CreateUser
from tests.db.helpers import count
from tests.stack import ALICE_SUBMITS_A_LONG_JOB, Invoke, Stack, call, eventually, ok


async def test_job_commands(cli: Invoke, stack: Stack) -> None:
    stack.world.plan(stack.world.team, 8)
    done = await ok(
        cli,
        "--as",
        "alice",
        "job",
        "submit",
        "org/team",
        "--gpu",
        "2",
        "--pool",
        "main",
        "--run-seconds",
        "0.2",
        "--wait",
    )
    assert isinstance(done, dict)
    assert done["status"] == "SUCCEEDED"
    described = await ok(cli, "--as", "alice", "job", "describe", done["job_id"])
    assert isinstance(described, dict)
    assert described["status"] == "SUCCEEDED"
    events = await ok(cli, "--as", "alice", "job", "events", done["job_id"])
    assert [e["to_status"] for e in events] == ["PENDING", "ADMITTED", "RUNNING", "SUCCEEDED"]
    # a long job to cancel, and the visibility list
    long = await ok(cli, *ALICE_SUBMITS_A_LONG_JOB)
    assert isinstance(long, dict)
    await stack.wait_status(long["job_id"], "RUNNING")
    listed = await eventually(
        lambda: ok(
            cli, "--as", "alice", "job", "list", "--status", "RUNNING", "--project", "org/team"
        ),
        what="the running job in alice's list",
    )
    assert [r["workflow_id"] for r in listed] == [
        f"{stack.settings.workflow_id_prefix}job-{long['job_id']}"
    ]
    why = await ok(cli, "--as", "alice", "job", "why", long["job_id"])
    assert isinstance(why, dict)
    assert why["status"] == "RUNNING"
    assert why["quota_now"][0]["in_use"] == 1
    cancelled = await ok(
        cli, "--as", "alice", "job", "cancel", long["job_id"], "--reason", "not needed"
    )
    assert isinstance(cancelled, dict)
    assert cancelled["status"] == "CANCELLED"
    code, _, err = await call(cli, "--as", "alice", "job", "cancel", long["job_id"])
    assert code == 1
    assert "already ended" in err or "no running workflow" in err


async def test_rbac_on_submit_and_cancel(cli: Invoke, stack: Stack) -> None:
    stack.store.tenants.create_user(CreateUser(username="bob"))
    jobs_before = count(stack.store.db, "jobs")
    code, _, err = await call(
        cli, "--as", "bob", "job", "submit", "org/team", "--gpu", "1", "--pool", "main"
    )
    assert code == 1
    assert "permission_denied" in err and "submitting a job needs member" in err
    assert count(stack.store.db, "jobs") == jobs_before
    job = await ok(cli, *ALICE_SUBMITS_A_LONG_JOB)
    assert isinstance(job, dict)
    code, _, err = await call(cli, "--as", "bob", "job", "cancel", job["job_id"])
    assert code == 1
    assert "cancelling needs member" in err
    assert (await asyncio.to_thread(stack.store.queue.get, job["job_id"])).status != "CANCELLED"
    code, _, err = await call(cli, "--as", "bob", "job", "why", job["job_id"])
    assert code == 1
    assert "has no role" in err


async def test_config_through_workflows(cli: Invoke, stack: Stack) -> None:
    root = ("--as", "root")
    first = await ok(
        cli,
        *root,
        "config",
        "commit",
        "org/team",
        "-m",
        "first",
        "--content",
        '{"defaults": {"pool": "main"}}',
    )
    await ok(
        cli,
        *root,
        "config",
        "commit",
        "org/team",
        "-m",
        "second",
        "--content",
        '{"defaults": {"pool": "main", "priority_class": "low"}}',
    )
    tagged = await ok(cli, *root, "config", "tag", "org/team", "v1", "HEAD~1")
    assert isinstance(tagged, dict) and isinstance(first, dict)
    assert tagged["commit_id"] == first["commit_id"]
    reverted = await ok(cli, *root, "config", "revert", "org/team", "v1")
    assert isinstance(reverted, dict)
    assert reverted["blob_hash"] == first["blob_hash"]
    code, _, err = await call(
        cli, "--as", "alice", "config", "commit", "org/team", "-m", "x", "--content", "{}"
    )
    assert code == 1
    assert "config commit needs admin" in err
    log = await ok(cli, *root, "config", "log", "org/team")
    assert [r["message"] for r in log] == [
        f"Revert to {first['commit_id']}",
        "second",
        "first",
    ]
