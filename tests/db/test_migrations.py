"""Forward-only migrations: checksums, advisory lock, status."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from domain.errors import MigrationError
from store.migrate import MIGRATIONS_DIR, discover, migrate, status
from tests.conftest import PgServer


@pytest.fixture
def empty_dsn(pg_server: PgServer) -> str:
    import uuid

    name = f"qf_empty_{uuid.uuid4().hex[:10]}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_server.dsn_for(name)


def test_migrate_applies_each_file_once_and_reports_status(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn) as conn:
        assert all(s.applied_at is None for s in status(conn))
        applied = migrate(conn)
        assert applied == [m.filename for m in discover()]
        assert migrate(conn) == []
        assert all(s.applied_at is not None and s.checksum_ok for s in status(conn))


def test_parallel_migrations_apply_each_file_once(empty_dsn: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_dsn) as conn:
                results.append(migrate(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(len(r) for r in results) == [0, 0, 0, len(discover())]


def test_an_edited_applied_migration_is_refused(empty_dsn: str, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    with psycopg.connect(empty_dsn) as conn:
        migrate(conn, copy)
        first = sorted(copy.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- a sneaky edit\n")
        with pytest.raises(
            MigrationError, match=re.escape(f"{first.name} was edited after it was applied")
        ):
            migrate(conn, copy)
        assert any(s.checksum_ok is False for s in status(conn, copy))
        first.unlink()
        with pytest.raises(MigrationError, match="this code does not know"):
            migrate(conn, copy)


def test_a_failing_migration_leaves_nothing_behind(empty_dsn: str, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    (copy / "9999_broken.sql").write_text("CREATE TABLE half_done (x int);\nSELECT 1/0;\n")
    with psycopg.connect(empty_dsn) as conn:
        with pytest.raises(MigrationError, match=r"9999_broken\.sql failed"):
            migrate(conn, copy)
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert [s.version for s in status(conn, copy) if s.applied_at is None] == ["9999"]
