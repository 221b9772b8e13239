"""Label selectors: query strings (``a=b,c!=d,e in (x,y)``) and ``LabelSelector`` objects."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!exists"]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_EQUALITY = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


class SelectorError(ValueError):
    """The selector cannot be parsed; the API server answers 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "=":
                return present and value in self.values
            case "!=":
                return not present or value not in self.values
            case "in":
                return present and value in self.values
            case "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!exists":
                return not present


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def _split_top_level(text: str) -> list[str]:
    # Commas separate requirements except inside "in (a,b)" value lists.
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_selector(text: str | None) -> Selector:
    """Parse the ``labelSelector`` query parameter."""
    if not text or not text.strip():
        return Selector()
    requirements = []
    for part in _split_top_level(text):
        if m := _EQUALITY.match(part):
            requirements.append(Requirement(m[1], "!=" if m[2] == "!=" else "=", frozenset({m[3]})))
        elif m := _SET.match(part):
            values = frozenset(v.strip() for v in m[3].split(",") if v.strip())
            requirements.append(Requirement(m[1], "in" if m[2] == "in" else "notin", values))
        elif m := _EXISTS.match(part):
            requirements.append(Requirement(m[2], "!exists" if m[1] else "exists"))
        else:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
    return Selector(tuple(requirements))


_EXPRESSION_OPERATORS: dict[str, Operator] = {
    "In": "in",
    "NotIn": "notin",
    "Exists": "exists",
    "DoesNotExist": "!exists",
}


def label_selector(obj: Mapping[str, Any] | None) -> Selector:
    """Convert a ``LabelSelector`` object (``matchLabels`` / ``matchExpressions``)."""
    obj = obj or {}
    requirements = [
        Requirement(str(k), "=", frozenset({str(v)}))
        for k, v in (obj.get("matchLabels") or {}).items()
    ]
    for expression in obj.get("matchExpressions") or []:
        operator = _EXPRESSION_OPERATORS.get(expression.get("operator", ""))
        if operator is None or not expression.get("key"):
            raise SelectorError(f"invalid label selector expression {expression!r}")
        values = frozenset(str(v) for v in expression.get("values") or [])
        requirements.append(Requirement(str(expression["key"]), operator, values))
    return Selector(tuple(requirements))
