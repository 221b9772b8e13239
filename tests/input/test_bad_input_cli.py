"""hypothesis-generated bad input for the CLI: exit code ≠ 0, one clear line, nothing written."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import starter
from cli.app import run, session
from store import Store
from tests.db.helpers import count

assert starter.COMMAND_MODULES

TABLES = [
    "users",
    "groups",
    "group_members",
    "projects",
    "role_bindings",
    "storages",
    "priority_classes",
    "pools",
    "resource_plans",
    "config_blobs",
    "config_commits",
    "jobs",
    "job_events",
]

Invoke = Callable[..., tuple[int, str]]


@pytest.fixture
def cli(store: Store, capsys: pytest.CaptureFixture[str]) -> Invoke:
    session.use(store)

    def invoke(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = run(list(args))
        return code, capsys.readouterr().err

    for args in (
        ["user", "create", "root", "--platform-admin"],
        ["--as", "root", "project", "create", "org", "--owner", "root"],
        ["--as", "root", "project", "create", "org/team", "--owner", "root"],
        ["--as", "root", "pool", "set", "main", "--gpu", "8", "--cpu", "64"],
    ):
        assert invoke(*args)[0] == 0
    return invoke


# Strings the schema's patterns refuse (the same patterns as domain.models and the SQL CHECKs).
USERNAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62})$")
POOL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$")
PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


def refused_by(pattern: re.Pattern[str]) -> st.SearchStrategy[str]:
    return st.text(alphabet=string.printable, max_size=120).filter(
        lambda s: not pattern.fullmatch(s.strip()) and "/" not in s
    )


bad_json = st.one_of(
    st.text(max_size=40).filter(lambda s: not _is_object(s)),
    st.sampled_from(
        [
            '{"limits": {"max_gpu_per_job": "many"}}',
            '{"a": NaN}',
            "[1,2]",
            '{"defaults": {"pool": "NOT A POOL"}}',
            "{" * 100,
        ]
    ),
)
bad_windows = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["Mon 10:00-10:00", "Mon 24:01-25:00", "Funday 01:00-02:00", "Mon 9-10", ""]),
)
sql_injection = st.sampled_from(
    [
        "x'; DROP TABLE jobs; --",
        "robert'); DELETE FROM users;--",
        "1 OR 1=1",
        '" OR ""="',
    ]
)


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def commands(draw: st.DrawFn) -> list[str]:
    kind = draw(st.integers(0, 11))
    root = ["--as", "root"]
    if kind == 0:
        return [*root, "user", "create", draw(refused_by(USERNAME) | sql_injection)]
    if kind == 1:
        name = draw(refused_by(PROJECT) | sql_injection).strip() or "?"
        return [*root, "project", "create", f"org/{name}", "--owner", "root"]
    if kind == 2:
        quantity = draw(st.integers(max_value=0) | st.integers(min_value=10**7 + 1))
        return [*root, "plan", "add", "org", "GPU", f"{quantity}", "always"]
    if kind == 3:
        return [*root, "plan", "add", "org", "GPU", "2", draw(bad_windows)]
    if kind == 4:
        name = draw(refused_by(POOL) | sql_injection)
        return [*root, "pool", "set", name, "--gpu", "1", "--cpu", "1"]
    if kind == 5:
        gpus = draw(st.integers(max_value=-1) | st.integers(min_value=10**6 + 1))
        return [*root, "pool", "set", "main", f"--gpu={gpus}", "--cpu", "1"]
    if kind == 6:
        return [*root, "config", "commit", "org", "-m", "x", "--content", draw(bad_json)]
    if kind == 7:
        return [*root, "job", "submit", "org", f"--gpu={draw(st.integers(min_value=4097))}"]
    if kind == 8:
        return [*root, "project", "move", "org", draw(st.sampled_from(["org/team", "org"]))]
    if kind == 9:
        return [*root, "plan", "remove", str(uuid4())]
    if kind == 10:
        return [
            *root,
            "role",
            "grant",
            draw(st.sampled_from(["user:nobody", "group:none", "x:y"])),
            "member",
            "org",
        ]
    affinity = draw(
        st.sampled_from(
            ['{"hostPath": "/"}', '{"nodeSelector": 3}', "nope", '{"securityContext": {}}']
        )
    )
    return [*root, "storage", "create", "data", "--owner", "root", "--affinity", affinity]


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(args=st.composite(commands)())
def test_bad_input_never_writes(cli: Invoke, store: Store, args: list[str]) -> None:
    before = {t: count(store.db, t) for t in TABLES}
    code, err = cli(*args)
    assert code != 0, args
    assert err.strip(), args
    if err.startswith("error: "):  # our errors are one line (typer's usage errors are its own)
        assert len(err.strip().splitlines()) == 1, err
    assert {t: count(store.db, t) for t in TABLES} == before, args
