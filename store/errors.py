"""The one place that turns database errors into the project's errors.

Reads ``sqlstate`` and ``diag.constraint_name``; each result is marked retryable or not through
its class (:attr:`QuotaflowError.retryable`). Callers that can say more (the overlapping plan's
window, the stale config head) catch the specific class and enrich the message.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import psycopg

from domain.errors import (
    AlreadyExists,
    CapacityExceeded,
    ConfigConflict,
    DatabaseUnavailable,
    IllegalTransition,
    InvalidInput,
    NotFound,
    PlanConflict,
    QuotaflowError,
    TopologyError,
    TransientError,
)

# Constraint name → what it means to a user.
CONSTRAINT_MESSAGES: dict[str, tuple[type[QuotaflowError], str]] = {
    "users_username_key": (AlreadyExists, "a user with this username already exists"),
    "groups_name_key": (AlreadyExists, "a group with this name already exists"),
    "group_members_pkey": (AlreadyExists, "the user is already a member of the group"),
    "projects_parent_id_name_key": (
        AlreadyExists, "a project with this name already exists under the same parent"),
    "projects_parent_id_fkey": (NotFound, "the parent project does not exist"),
    "projects_owner_id_fkey": (NotFound, "the owner does not exist"),
    "projects_path_consistent": (TopologyError, "the project tree would become inconsistent"),
    "role_bindings_principal_id_fkey": (NotFound, "the principal does not exist"),
    "role_bindings_project_id_fkey": (NotFound, "the project does not exist"),
    "storages_owner_id_fkey": (NotFound, "the owner does not exist"),
    "storages_owner_id_name_key": (AlreadyExists, "the owner already has a storage of this name"),
    "storages_affinity_config_keys": (
        InvalidInput, "affinity_config may only hold nodeSelector, affinity and tolerations"),
    "config_commits_one_child": (ConfigConflict, "the parent commit is no longer the head"),
    "config_commits_one_root": (ConfigConflict, "the project already has a configuration"),
    "config_commits_tag": (AlreadyExists, "this tag already names a commit of the project"),
    "config_commits_parent_id_project_id_fkey": (
        NotFound, "the parent commit does not exist in this project"),
    "config_commits_project_id_fkey": (NotFound, "the project does not exist"),
    "config_commits_author_id_fkey": (NotFound, "the author does not exist"),
    "priority_classes_pkey": (AlreadyExists, "a priority class with this name already exists"),
    "priority_classes_one_default": (
        AlreadyExists, "another priority class is already the global default"),
    "resource_plans_no_overlap": (PlanConflict, "the window overlaps an existing plan"),
    "resource_plans_project_id_fkey": (NotFound, "the project does not exist"),
    "resource_plans_resource_owner_id_fkey": (NotFound, "the resource owner does not exist"),
    "jobs_pkey": (AlreadyExists, "a job with this id already exists"),
    "jobs_project_id_fkey": (NotFound, "the project does not exist"),
    "jobs_pool_fkey": (NotFound, "the pool does not exist"),
    "jobs_submitted_by_fkey": (NotFound, "the submitting user does not exist"),
    "jobs_priority_class_fkey": (NotFound, "the priority class does not exist"),
    "jobs_storage_id_fkey": (NotFound, "the storage does not exist"),
    "preemptions_one_active": (AlreadyExists, "the job already has a preemption under way"),
}  # fmt: skip

_BY_SQLSTATE: dict[str, type[QuotaflowError]] = {
    "23505": AlreadyExists,
    "23503": NotFound,
    "23514": InvalidInput,
    "23502": InvalidInput,
    "23P01": PlanConflict,
    "22P02": InvalidInput,
    "22023": InvalidInput,
    "22003": InvalidInput,
    "22001": InvalidInput,
    "2201X": InvalidInput,
    "QF001": IllegalTransition,
    "QF002": CapacityExceeded,
    "QF003": TopologyError,
    "QF004": NotFound,
    "QF005": IllegalTransition,
}

# Worth retrying: the same statement may well succeed in a moment.
_TRANSIENT_CLASSES = ("08", "53", "57P", "40")
_TRANSIENT = {"55P03", "55006", "57014"}

_SECRET = re.compile(r"(password\s*=\s*)\S+|(://[^:/@\s]+:)[^@\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """Remove passwords from DSNs and libpq messages."""
    return _SECRET.sub(
        lambda m: (m.group(1) or m.group(2)) + "***" + ("@" if m.group(2) else ""), text
    )


def translate(exc: psycopg.Error) -> QuotaflowError:
    state = exc.sqlstate or ""
    diag = getattr(exc, "diag", None)
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    primary = (getattr(diag, "message_primary", None) if diag is not None else None) or str(exc)
    primary = redact(primary.strip().splitlines()[0] if primary.strip() else type(exc).__name__)

    if isinstance(exc, psycopg.OperationalError) and not state:
        return DatabaseUnavailable(f"database unavailable: {primary}")
    if state in _TRANSIENT or any(state.startswith(prefix) for prefix in _TRANSIENT_CLASSES):
        if state.startswith(("08", "57P")):
            return DatabaseUnavailable(f"database unavailable ({state}): {primary}")
        return TransientError(f"{primary} ({state})", sqlstate=state)
    if constraint and constraint in CONSTRAINT_MESSAGES:
        known, message = CONSTRAINT_MESSAGES[constraint]
        return known(message, sqlstate=state, constraint=constraint)
    by_state = _BY_SQLSTATE.get(state)
    if by_state is not None:
        return by_state(primary, sqlstate=state, constraint=constraint)
    return QuotaflowError(f"database error {state or '?'}: {primary}", sqlstate=state)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Re-raise any psycopg error as the project's error (the original is the ``__cause__``)."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc) from exc
