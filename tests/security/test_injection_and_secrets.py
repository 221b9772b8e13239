"""Free text is stored literally (no SQL injection); secrets never reach logs, errors or
workflow histories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from domain.models import CommitConfig, CreatePriorityClass, CreateUser, JobStatus, SubmitJob
from settings import Settings
from store import Store
from store.errors import translate
from tests.conftest import PgServer
from tests.db.helpers import count
from tests.factories import seed

ROOT = Path(__file__).resolve().parents[2]
NASTY = [
    "x'; DROP TABLE jobs; --",
    "robert'); DELETE FROM users WHERE ('1'='1",
    "%(name)s %s {0} $1 \\x00",
    '" OR ""="',
    "ünïcødé ✓ — \t tabs",
]


@pytest.mark.parametrize("text", NASTY)
def test_free_text_is_stored_literally(store: Store, text: str) -> None:
    w = seed(store)
    clean = text.replace("\x00", "")  # PostgreSQL text cannot hold NUL: refused, not mangled
    user = store.tenants.create_user(CreateUser(username="eve", display_name=clean[:200]))
    assert store.tenants.user(user.id).display_name == clean[:200]
    pclass = store.catalog.create_priority_class(
        CreatePriorityClass(name="odd", value=5, description=clean)
    )
    assert pclass.description == clean
    job = store.queue.submit(
        SubmitJob(project_id=w.team.p_id, submitted_by=w.alice.id, pool="main", gpu=1, name=clean),
        actor="alice",
    )
    assert store.queue.get(job.id).name == clean
    cancelled = store.queue.transition(
        job.id, JobStatus.CANCELLED, from_statuses=[JobStatus.PENDING], reason=clean, actor="alice"
    )
    assert cancelled.status_reason == clean
    commit = store.configs.commit(
        CommitConfig(
            project_id=w.team.p_id,
            author_id=w.admin.id,
            message=clean,
            content={"annotations": {"note": clean}},
        )
    )
    shown, content = store.configs.show(commit.id)
    assert shown.message == clean and content["annotations"]["note"] == clean
    # the tables the strings talk about are all still there, with their rows
    assert count(store.db, "jobs") == 1 and count(store.db, "users") == 3


def test_nul_bytes_are_refused_with_a_typed_error(store: Store) -> None:
    from domain.errors import QuotaflowError

    w = seed(store)
    with pytest.raises(QuotaflowError):
        store.queue.submit(
            SubmitJob(
                project_id=w.team.p_id, submitted_by=w.alice.id, pool="main", gpu=1, name="a\x00b"
            ),
            actor="alice",
        )
    assert count(store.db, "jobs") == 0


def test_visibility_queries_quote_what_users_type() -> None:
    from workflows.client import visibility_query

    query = visibility_query(project_prefix="x' OR QfStatus != '", status="RUNNING")
    assert "QfProject STARTS_WITH 'x\\' OR QfStatus != \\''" in query


def test_settings_and_errors_hide_database_passwords(pg_server: PgServer) -> None:
    secret = "hunter2-s3cret"
    settings = Settings(database_url=f"postgresql://qf:{secret}@127.0.0.1:1/x")
    assert secret not in repr(settings) and secret not in str(settings.model_dump())
    # A real failed connection with the password in the DSN: the error we raise omits it.
    dsn = pg_server.dsn_for("no_such_database").replace("postgres@", f"postgres:{secret}@")
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(dsn, connect_timeout=5)
    assert secret not in str(translate(err.value))


def test_worker_logs_and_histories_carry_no_secrets(
    pg_server: PgServer, db_dsn: str, tmp_path: Path
) -> None:
    secret = "hunter2-s3cret"
    with pg_server.admin() as conn:
        conn.execute(f"CREATE ROLE qf_secret LOGIN SUPERUSER PASSWORD '{secret}'")
    dsn = make_conninfo(db_dsn, user="qf_secret", password=secret)
    assert secret in dsn
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "QF_DATABASE_URL": dsn,
        "QF_TEMPORAL_ADDRESS": "127.0.0.1:1",
        "QF_KUBE_URL": "http://127.0.0.1:1",
    }
    with open(log, "w") as out:
        # It connects to the database with the password, then finds no Temporal at that
        # address: it fails to start and says why — without the DSN.
        done = subprocess.run(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=out, timeout=120
        )
    assert done.returncode != 0
    text = log.read_text()
    assert text.strip()
    assert secret not in text
    for history in (ROOT / "tests" / "temporal" / "histories").glob("*.json"):
        body = history.read_text()
        assert "postgresql://" not in body and "password" not in body.lower()
