"""The admin command line, run in-process against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import starter
from cli.app import run, session
from store import Store
from tests.db.helpers import count

assert starter.COMMAND_MODULES  # importing starter registers the commands


@pytest.fixture
def cli(store: Store, capsys: pytest.CaptureFixture[str]):
    session.use(store)

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def ok_json(cli, *args: str):
    code, out, err = cli("--json", *args)
    assert code == 0, err
    return json.loads(out)


def test_admin_flow(cli, store: Store) -> None:
    ok_json(cli, "user", "create", "root", "--platform-admin")
    ok_json(cli, "user", "create", "alice")
    ok_json(cli, "group", "create", "ml")
    ok_json(cli, "group", "add-member", "ml", "alice")
    ok_json(cli, "project", "create", "org", "--owner", "user:root")
    ok_json(cli, "project", "create", "org/team", "--owner", "group:ml")
    ok_json(cli, "project", "create", "org/other", "--owner", "root")
    ok_json(cli, "project", "move", "org/team", "org/other")
    tree = ok_json(cli, "project", "tree")
    assert [r["name"] for r in tree] == ["org", "other", "team"]
    ok_json(cli, "role", "grant", "group:ml", "member", "org/other")
    assert ok_json(cli, "role", "list", "org/other/team")[0]["role"] == "member"
    ok_json(
        cli,
        "storage",
        "create",
        "data",
        "--owner",
        "group:ml",
        "--affinity",
        '{"nodeSelector": {"disk": "ssd"}}',
    )
    ok_json(cli, "priority-class", "create", "batch", "50", "--min-runtime", "600")
    assert "batch" in [c["name"] for c in ok_json(cli, "priority-class", "list")]
    ok_json(cli, "pool", "set", "main", "--gpu", "8", "--cpu", "64")
    plan = ok_json(cli, "plan", "add", "org/other/team", "GPU", "4", "Fri 22:00-Mon 06:00")
    assert plan["window"] == "Fri 22:00–Mon 06:00" and len(plan["segments"]) == 2
    assert len(ok_json(cli, "plan", "list", "org/other/team")) == 1
    commit = ok_json(
        cli,
        "--as",
        "alice",
        "config",
        "commit",
        "org/other/team",
        "-m",
        "first",
        "--content",
        '{"defaults": {"pool": "main"}}',
    )
    ok_json(
        cli,
        "--as",
        "alice",
        "config",
        "commit",
        "org/other/team",
        "-m",
        "second",
        "--content",
        '{"defaults": {"pool": "main", "priority_class": "batch"}}',
    )
    ok_json(cli, "config", "tag", "org/other/team", "v1", "HEAD~1")
    assert [c["message"] for c in ok_json(cli, "config", "log", "org/other/team")] == [
        "second",
        "first",
    ]
    diff = ok_json(cli, "config", "diff", "org/other/team", "v1")
    assert diff == [
        {"path": "$.defaults.priority_class", "op": "added", "old": None, "new": "batch"}
    ]
    reverted = ok_json(cli, "--as", "alice", "config", "revert", "org/other/team", "v1")
    assert reverted["blob_hash"] == commit["blob_hash"]
    job = ok_json(cli, "--as", "alice", "job", "submit", "org/other/team", "--gpu", "2")
    assert job["pool"] == "main" and job["status"] == "PENDING"
    listed = ok_json(cli, "job", "list", "--project", "org", "--status", "PENDING")
    assert [j["id"] for j in listed] == [job["id"]]
    code, out, _ = cli("project", "tree")
    assert code == 0 and "team" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["user", "create", "Bad Name"], "invalid_input: username"),
        (["plan", "add", "org", "GPU", "4", "Mon 10:00-10:00"], "invalid_input: window"),
        (["plan", "add", "org", "GPU", "0", "always"], "invalid_input: quantity"),
        (["plan", "add", "org", "TPU", "1", "always"], "Invalid value"),
        (["plan", "add", "nowhere", "GPU", "1", "always"], "not_found: no project 'nowhere'"),
        (["project", "move", "org", "org/team"], "topology_error"),
        (["pool", "set", "main", "--gpu=-3", "--cpu", "1"], "invalid_input: gpu_capacity"),
        (
            ["--as", "root", "config", "commit", "org", "-m", "x", "--content", "{bad"],
            "invalid_input: content: malformed JSON",
        ),
        (["--as", "root", "job", "submit", "org", "--gpu", "99999"], "invalid_input: gpu"),
        (["--as", "ghost", "job", "submit", "org", "--gpu", "1"], "no user named 'ghost'"),
        (["job", "submit", "org", "--gpu", "1"], "--as"),
        (
            ["storage", "create", "s", "--owner", "root", "--affinity", '{"hostPath": "/"}'],
            "invalid_input: affinity_config",
        ),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(
    cli, store: Store, args: list[str], message: str
) -> None:
    ok_json(cli, "user", "create", "root", "--platform-admin")
    ok_json(cli, "project", "create", "org", "--owner", "root")
    ok_json(cli, "project", "create", "org/team", "--owner", "root")
    ok_json(cli, "pool", "set", "main", "--gpu", "8", "--cpu", "64")
    tables = ["users", "projects", "resource_plans", "config_commits", "jobs", "storages"]
    before = {t: count(store.db, t) for t in tables}
    code, _, err = cli(*args)
    assert code != 0
    assert message in err, err
    if "Invalid value" not in message:  # typer's own usage errors are several lines
        assert len(err.strip().splitlines()) == 1
    assert {t: count(store.db, t) for t in tables} == before


def test_the_real_entry_point_exits_non_zero(db_dsn: str) -> None:
    env = {**os.environ, "QF_DATABASE_URL": db_dsn}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "starter.py", "project", "tree", "nope"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "error: not_found: no project 'nope'"
    shown = subprocess.run(
        [sys.executable, "starter.py", "db", "status", "--json"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0
    assert all(row["checksum"] == "ok" for row in json.loads(shown.stdout))
