"""Forward-only migrations from ``sql/migrations/NNNN_name.sql``.

Each file runs in its own transaction while the run holds an advisory lock, so two processes
migrating at once apply each file once. A file's SHA-256 is recorded when applied; an applied
file that was edited afterwards is refused, as is a database that knows a migration this code
does not have.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from domain.errors import MigrationError
from store.errors import translated

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "sql" / "migrations"
# Any constant works; this one spells "qfmigrat" in hex-ish.
ADVISORY_LOCK_KEY = 0x7166_6D69_6772_6174 & 0x7FFF_FFFF_FFFF_FFFF
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version}_{self.name}.sql"


@dataclass(frozen=True)
class MigrationState:
    version: str
    name: str
    applied_at: datetime | None
    checksum_ok: bool | None


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        migrations.append(Migration(match[1], match[2], path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number in {directory}")
    return migrations


_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text        PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


def _applied(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, str, datetime]]:
    rows = conn.execute(
        "SELECT version, name, checksum, applied_at FROM schema_migrations"
    ).fetchall()
    return {
        _get(r, 0, "version"): (
            _get(r, 1, "name"),
            _get(r, 2, "checksum"),
            _get(r, 3, "applied_at"),
        )
        for r in rows
    }


def _get(row: Any, index: int, key: str) -> Any:
    return row[key] if isinstance(row, dict) else row[index]


def _table_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(_get(row, 0, "?column?")) if row is not None else False


def _verify(known: list[Migration], applied: dict[str, tuple[str, str, datetime]]) -> None:
    by_version = {m.version: m for m in known}
    for version, (name, checksum, _) in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version}_{name} that this code does not know; "
                "run a newer quotaflow"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.filename} was edited after it was applied "
                f"(recorded sha256 {checksum[:12]}…, file has {migration.checksum[:12]}…); "
                "write a new migration instead"
            )


def status(conn: psycopg.Connection[Any], directory: Path = MIGRATIONS_DIR) -> list[MigrationState]:
    known = discover(directory)
    with translated():
        applied = _applied(conn) if _table_exists(conn) else {}
        conn.rollback()
    states = [
        MigrationState(
            m.version,
            m.name,
            applied[m.version][2] if m.version in applied else None,
            (applied[m.version][1] == m.checksum) if m.version in applied else None,
        )
        for m in known
    ]
    for version, (name, _, at) in applied.items():
        if version not in {m.version for m in known}:
            states.append(MigrationState(version, name, at, None))
    return sorted(states, key=lambda s: s.version)


def migrate(conn: psycopg.Connection[Any], directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is missing; returns the file names applied."""
    known = discover(directory)
    done: list[str] = []
    with translated():
        conn.commit()
        previous_autocommit = conn.autocommit
        conn.autocommit = True
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            try:
                conn.execute(_BOOTSTRAP)
                applied = _applied(conn)
                _verify(known, applied)
                for migration in known:
                    if migration.version in applied:
                        continue
                    with conn.transaction():
                        try:
                            conn.execute(migration.sql.encode())
                        except psycopg.Error as exc:
                            raise MigrationError(
                                f"{migration.filename} failed: "
                                f"{(exc.diag.message_primary or str(exc)).strip()}"
                            ) from exc
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) "
                            "VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                    done.append(migration.filename)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        finally:
            conn.autocommit = previous_autocommit
    return done
