"""Test fixtures on real servers.

PostgreSQL: one server for the whole session — the embedded wheel by default (in a temporary
folder, fsync off), the server of ``QF_DATABASE_URL`` when set, or a testcontainers PostgreSQL
when ``QF_TEST_DOCKER=1`` and a Docker engine answers. The migrations build a template database
once; every test gets its own ``CREATE DATABASE … TEMPLATE …`` copy (fast, independent).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from store import Store
from store.db import Database
from store.migrate import migrate


@dataclass(frozen=True)
class PgServer:
    """Where tests may create databases."""

    admin_dsn: str

    def dsn_for(self, database: str) -> str:
        params = conninfo_to_dict(self.admin_dsn)
        params["dbname"] = database
        return make_conninfo(**params)  # type: ignore[arg-type]

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_dsn, autocommit=True)


def _docker_server() -> Iterator[PgServer] | None:
    if os.environ.get("QF_TEST_DOCKER") != "1":
        return None
    try:
        from testcontainers.postgres import PostgresContainer
    except ImportError:
        return None

    def run() -> Iterator[PgServer]:
        with PostgresContainer("postgres:18", driver=None) as container:
            yield PgServer(container.get_connection_url())

    return run()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    url = os.environ.get("QF_DATABASE_URL")
    if url:
        yield PgServer(url)
        return
    docker = _docker_server()
    if docker is not None:
        yield from docker
        return
    from devstack.postgres import EmbeddedPostgres, free_port

    state = Path(tempfile.mkdtemp(prefix="qf-test-"))
    # mkdtemp makes it private; as root the server's own user must be able to enter it (else
    # devstack.postgres falls back to a folder under /var/tmp).
    state.chmod(0o755)
    server = EmbeddedPostgres(state, port=free_port(), durable=False, max_connections=300)
    server.acquire()
    try:
        yield PgServer(server.admin_dsn())
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)
        if server.data_dir.parent != server.home:
            shutil.rmtree(server.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> Iterator[str]:
    name = f"qf_template_{uuid.uuid4().hex[:8]}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(pg_server.dsn_for(name)) as conn:
        migrate(conn)
    with pg_server.admin() as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
    yield name
    with pg_server.admin() as conn, contextlib.suppress(psycopg.Error):
        conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false')
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def db_dsn(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"qf_test_{uuid.uuid4().hex[:12]}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield pg_server.dsn_for(name)
    with pg_server.admin() as conn, contextlib.suppress(psycopg.Error):
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def database(db_dsn: str) -> Iterator[Database]:
    db = Database(db_dsn, min_size=1, max_size=8)
    yield db
    db.close()


@pytest.fixture
def store(database: Database) -> Store:
    return Store(database, UTC)


# The whole-stack fixtures (one Temporal dev server per session, a worker per test): defined in
# tests/stack.py, registered here so every directory shares the same server.
from tests.stack import cli, emulator, stack, temporal_env  # noqa: E402, F401
