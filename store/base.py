"""Small helpers shared by the store modules: run a named query, map rows to models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from store.db import Connection, Database
from store.queries import q

M = TypeVar("M", bound=BaseModel)


def one(
    conn: Connection, name: str, params: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    return conn.execute(q(name), params or {}).fetchone()


def all_rows(
    conn: Connection, name: str, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    return conn.execute(q(name), params or {}).fetchall()


def run(conn: Connection, name: str, params: Mapping[str, Any] | None = None) -> int:
    return conn.execute(q(name), params or {}).rowcount


def to_model(model: type[M], row: Mapping[str, Any]) -> M:
    fields = model.model_fields
    return model.model_validate({k: v for k, v in row.items() if k in fields})


class Repository:
    """A group of related store operations over one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
