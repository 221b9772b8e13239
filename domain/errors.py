"""The project's own exceptions.

Every error a caller can act on is a :class:`QuotaflowError` with a stable ``code`` and a
``retryable`` flag. Activities turn these into Temporal ``ApplicationError`` s (type = the class
name, ``non_retryable = not retryable``); the CLI prints ``code: message`` and exits non-zero.
"""

from __future__ import annotations

from typing import Any, ClassVar


class QuotaflowError(Exception):
    """Base of every error quotaflow raises on purpose."""

    code: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


# --- bad input ---------------------------------------------------------------------------


class InvalidInput(QuotaflowError):
    """A request is malformed; ``field`` names what is wrong."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(f"{field}: {message}" if field else message, field=field, **details)
        self.field = field
        self.reason = message


class NotFound(QuotaflowError):
    code = "not_found"


class AlreadyExists(QuotaflowError):
    code = "already_exists"


class PermissionDenied(QuotaflowError):
    code = "permission_denied"


# --- conflicts the database reports -------------------------------------------------------


class PlanConflict(QuotaflowError):
    """A weekly plan overlaps an existing one of the same project and resource."""

    code = "plan_conflict"


class ConfigConflict(QuotaflowError):
    """A config commit named a parent that is no longer the project's head."""

    code = "config_conflict"


class TopologyError(QuotaflowError):
    """An impossible project tree change, e.g. moving a node under its own descendant."""

    code = "topology_error"


class IllegalTransition(QuotaflowError):
    """A job state change the state machine does not allow."""

    code = "illegal_transition"


class CapacityExceeded(QuotaflowError):
    """The database refused an admission that would exceed a pool's capacity."""

    code = "capacity_exceeded"


class MigrationError(QuotaflowError):
    code = "migration_error"


# --- transient ---------------------------------------------------------------------------


class TransientError(QuotaflowError):
    """Worth retrying: lost connection, serialization failure, deadlock, a 5xx, a timeout."""

    code = "transient"
    retryable = True


class DatabaseUnavailable(TransientError):
    code = "database_unavailable"
