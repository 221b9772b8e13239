"""Canonical JSON and its SHA-256: the address of a configuration blob.

Canonical form: object keys sorted, no insignificant whitespace, UTF-8 (no ``\\u`` escapes for
printable characters), integers as integers, floats in their shortest round-trip form, and no
NaN or infinities (they are not JSON). Two documents that differ only in key order or whitespace
have the same canonical form and so the same hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from domain.errors import InvalidInput

MAX_DEPTH = 64


def _check(value: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"nested deeper than {MAX_DEPTH} levels", field=where)
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput("NaN and infinities are not JSON", field=where)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"object keys must be strings, got {key!r}", field=where)
            _check(item, f"{where}.{key}", depth + 1)
        return
    raise InvalidInput(f"{type(value).__name__} is not a JSON value", field=where)


def canonical_json(value: Any) -> str:
    _check(value, "content")
    # Floats that hold integral values stay floats (1.0), as JSON round-trips keep them.
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def content_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def parse_json_object(text: str, *, field: str = "content") -> dict[str, Any]:
    """Parse user-supplied JSON text into an object, with a clear error."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field=field
        ) from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"must be a JSON object, got {type(value).__name__}", field=field)
    _check(value, field)
    return value


def _reject_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not JSON", field="content")
