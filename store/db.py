"""Connections: the PostgreSQL a process talks to, and its connection pool.

``QF_DATABASE_URL`` set → that server. Unset → the embedded server under ``QF_STATE_DIR``,
started or joined with a lease that :meth:`Database.close` releases (see devstack.postgres).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from settings import Settings, get_settings
from store.errors import translated

Connection = psycopg.Connection[DictRow]


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET application_name = 'quotaflow'")
    conn.commit()


class Database:
    """A connection pool plus, for the embedded default, the lease that keeps the server up."""

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 10, embedded: Any | None = None
    ) -> None:
        self.dsn = dsn
        self._embedded = embedded
        self.pool: ConnectionPool[Connection] = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "autocommit": False},
            configure=_configure,
            open=False,
            name="quotaflow",
        )
        with translated():
            self.pool.open(wait=True, timeout=30)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> Database:
        settings = settings or get_settings()
        embedded = None
        if settings.database_url is not None:
            dsn = settings.database_url.get_secret_value()
        else:
            from devstack.postgres import EmbeddedPostgres

            embedded = EmbeddedPostgres(settings.state_dir, port=settings.pg_port)
            dsn = embedded.acquire()
        options: dict[str, Any] = {
            "min_size": settings.pg_pool_min,
            "max_size": settings.pg_pool_max,
        }
        options.update(overrides)
        return cls(dsn, embedded=embedded, **options)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection; the block is one transaction, committed on success."""
        with translated(), self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self.pool.close()
        if self._embedded is not None:
            self._embedded.release()
            self._embedded = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
