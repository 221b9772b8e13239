"""Named SQL, kept as SQL: ``sql/queries/*.sql`` loaded once into a dict.

A file holds several queries, each introduced by a header line ``-- query_name --``, then a
comment saying what it is for, then the statement with ``%(name)s`` parameters. Names are
noun-first (``job_claim_batch``, ``plan_insert``) and unique across files.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from psycopg import sql

QUERIES_DIR = Path(__file__).resolve().parents[1] / "sql" / "queries"
_HEADER = re.compile(r"^-- ([a-z][a-z0-9_]*) --\s*$", re.MULTILINE)


def parse_queries(text: str, source: str) -> dict[str, str]:
    found: dict[str, str] = {}
    parts = _HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, …]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        statement = body.strip().rstrip(";").strip()
        if not statement:
            raise ValueError(f"query {name!r} in {source} is empty")
        if name in found:
            raise ValueError(f"query {name!r} is defined twice in {source}")
        found[name] = statement
    return found


@lru_cache(maxsize=1)
def all_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(QUERIES_DIR.glob("*.sql")):
        for name, statement in parse_queries(path.read_text(), path.name).items():
            if name in queries:
                raise ValueError(f"query {name!r} in {path.name} is already defined elsewhere")
            queries[name] = statement
    return queries


def q(name: str) -> sql.SQL:
    """The statement called ``name``, ready for ``cursor.execute``."""
    try:
        return sql.SQL(all_queries()[name])
    except KeyError:
        raise KeyError(f"no query named {name!r} in {QUERIES_DIR}") from None
