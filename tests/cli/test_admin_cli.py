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
    root = ("--as", "root")
    ok_json(cli, *root, "user", "create", "alice")
    ok_json(cli, *root, "group", "create", "ml")
    ok_json(cli, *root, "group", "add-member", "ml", "alice")
    ok_json(cli, *root, "project", "create", "org", "--owner", "user:root")
    ok_json(cli, *root, "project", "create", "org/team", "--owner", "group:ml")
    ok_json(cli, *root, "project", "create", "org/other", "--owner", "root")
    ok_json(cli, *root, "project", "move", "org/team", "org/other")
    tree = ok_json(cli, *root, "project", "tree")
    assert [r["name"] for r in tree] == ["org", "other", "team"]
    ok_json(cli, *root, "role", "grant", "group:ml", "member", "org/other")
    assert ok_json(cli, *root, "role", "list", "org/other/team")[0]["role"] == "member"
    ok_json(
        cli,
        *root,
        "storage",
        "create",
        "data",
        "--owner",
        "group:ml",
        "--affinity",
        '{"nodeSelector": {"disk": "ssd"}}',
    )
    ok_json(cli, *root, "priority-class", "create", "batch", "50", "--min-runtime", "600")
    assert "batch" in [c["name"] for c in ok_json(cli, "priority-class", "list")]
    ok_json(cli, *root, "pool", "set", "main", "--gpu", "8", "--cpu", "64")
    plan = ok_json(cli, *root, "plan", "add", "org/other/team", "GPU", "4", "Fri 22:00-Mon 06:00")
    assert plan["window"] == "Fri 22:00–Mon 06:00"
    assert len(plan["segments"]) == 2
    assert len(ok_json(cli, *root, "plan", "list", "org/other/team")) == 1
    # alice sees the subtree her group is bound to (and its ancestors do not leak)
    assert [r["name"] for r in ok_json(cli, "--as", "alice", "project", "tree")] == [
        "other",
        "team",
    ]
    code, out, _ = cli(*root, "project", "tree")
    assert code == 0
    assert "team" in out


def test_rbac_on_every_admin_mutation(cli, store: Store) -> None:
    ok_json(cli, "user", "create", "root", "--platform-admin")
    root = ("--as", "root")
    ok_json(cli, *root, "user", "create", "alice")
    ok_json(cli, *root, "user", "create", "bob")
    ok_json(cli, *root, "project", "create", "org", "--owner", "root")
    ok_json(cli, *root, "project", "create", "org/team", "--owner", "root")
    ok_json(cli, *root, "pool", "set", "main", "--gpu", "8", "--cpu", "64")
    ok_json(cli, *root, "role", "grant", "user:alice", "member", "org/team")
    tables = [
        "users",
        "groups",
        "projects",
        "resource_plans",
        "role_bindings",
        "pools",
        "priority_classes",
        "storages",
    ]
    before = {t: count(store.db, t) for t in tables}
    denied = [
        ("alice", ["plan", "add", "org/team", "GPU", "4", "always"], "needs admin"),
        ("alice", ["project", "create", "org/team/sub", "--owner", "alice"], "needs admin"),
        ("alice", ["role", "grant", "user:alice", "admin", "org/team"], "needs admin"),
        ("alice", ["pool", "set", "main", "--gpu", "99", "--cpu", "1"], "not a platform admin"),
        ("alice", ["user", "create", "mallory"], "not a platform admin"),
        ("alice", ["priority-class", "create", "vip", "99999"], "not a platform admin"),
        ("alice", ["storage", "create", "s", "--owner", "bob"], "not a platform admin"),
        ("bob", ["plan", "list", "org/team"], "has no role on"),
        ("bob", ["project", "tree", "org"], "has no role on"),
        ("nobody", ["plan", "list", "org/team"], "unknown actor 'nobody'"),
    ]
    for actor, args, message in denied:
        code, _, err = cli("--as", actor, *args)
        assert code == 1, (actor, args)
        assert "permission_denied" in err and message in err, err
    assert {t: count(store.db, t) for t in tables} == before
    # what a tenant may not see is not even named
    _, _, err = cli("--as", "bob", "plan", "list", "org/team")
    assert "org/team" not in err.split("has no role on")[1]
    assert ok_json(cli, "--as", "bob", "project", "tree") == []


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
            ["config", "commit", "org", "-m", "x", "--content", "{bad"],
            "invalid_input: content: malformed JSON",
        ),
        (
            ["config", "commit", "org", "-m", "x", "--content", '{"limits": {"x": 1}}'],
            "invalid_input: content.limits.x",
        ),
        (["job", "submit", "org", "--gpu", "99999"], "invalid_input: gpu"),
        (["job", "submit", "org", "--gpu", "0"], "at least one GPU or one CPU"),
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
    ok_json(cli, "--as", "root", "project", "create", "org", "--owner", "root")
    ok_json(cli, "--as", "root", "project", "create", "org/team", "--owner", "root")
    ok_json(cli, "--as", "root", "pool", "set", "main", "--gpu", "8", "--cpu", "64")
    tables = ["users", "projects", "resource_plans", "config_commits", "jobs", "storages"]
    before = {t: count(store.db, t) for t in tables}
    code, _, err = cli("--as", "root", *args)
    assert code != 0
    assert message in err, err
    if "Invalid value" not in message:  # typer's own usage errors are several lines
        assert len(err.strip().splitlines()) == 1
    assert {t: count(store.db, t) for t in tables} == before


def test_actor_problems(cli, store: Store) -> None:
    code, _, err = cli("user", "create", "first")
    assert code == 1
    assert "the first user must be a platform admin" in err
    ok_json(cli, "user", "create", "root", "--platform-admin")
    code, _, err = cli("project", "tree")
    assert code == 1
    assert "--as" in err
    code, _, err = cli("--as", "ghost", "project", "tree")
    assert "unknown actor 'ghost'" in err


def test_the_real_entry_point_exits_non_zero(db_dsn: str) -> None:
    env = {**os.environ, "QF_DATABASE_URL": db_dsn}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "starter.py", "--as", "ghost", "project", "tree", "nope"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "error: permission_denied: unknown actor 'ghost'"
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
