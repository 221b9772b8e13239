"""A structural diff of two JSON documents, for ``config diff``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Change:
    path: str
    op: Literal["added", "removed", "changed"]
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        if self.op == "added":
            return f"+ {self.path}: {self.new!r}"
        if self.op == "removed":
            return f"- {self.path}: {self.old!r}"
        return f"~ {self.path}: {self.old!r} -> {self.new!r}"


def diff(old: Any, new: Any, path: str = "$") -> list[Change]:
    """Changes that turn ``old`` into ``new``: objects key by key, everything else as a whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[Change] = []
        for key in sorted(old.keys() | new.keys()):
            child = f"{path}.{key}"
            if key not in new:
                changes.append(Change(child, "removed", old=old[key]))
            elif key not in old:
                changes.append(Change(child, "added", new=new[key]))
            else:
                changes.extend(diff(old[key], new[key], child))
        return changes
    if old == new and type(old) is type(new):
        return []
    return [Change(path, "changed", old=old, new=new)]
