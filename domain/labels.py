"""ltree labels and paths of the project tree.

A project's label is derived from its id (``p`` + the 32 hex digits), never from its name, so a
rename rewrites nothing and a path can be turned back into the ids of its ancestors without a
query. The database derives labels with the same rule (``qf_project_label``).
"""

from __future__ import annotations

import re
from uuid import UUID

from domain.errors import InvalidInput

LABEL_RE = re.compile(r"^p[0-9a-f]{32}$")


def project_label(project_id: UUID) -> str:
    return "p" + project_id.hex


def label_to_id(label: str) -> UUID:
    if not LABEL_RE.match(label):
        raise InvalidInput(f"{label!r} is not a project label (p + 32 hex digits)", field="label")
    return UUID(hex=label[1:])


def split_path(path: str) -> list[str]:
    if not path:
        raise InvalidInput("an ltree path has at least one label", field="path")
    labels = path.split(".")
    for label in labels:
        label_to_id(label)
    return labels


def path_ids(path: str) -> list[UUID]:
    """The ids on ``path``, root first."""
    return [label_to_id(label) for label in split_path(path)]


def child_path(parent_path: str | None, project_id: UUID) -> str:
    label = project_label(project_id)
    return f"{parent_path}.{label}" if parent_path else label


def is_ancestor_or_self(ancestor: str, path: str) -> bool:
    """ltree's ``ancestor @> path``."""
    return path == ancestor or path.startswith(ancestor + ".")


def depth(path: str) -> int:
    return len(split_path(path))
