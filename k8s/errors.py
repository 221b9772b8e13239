"""Kubernetes failures as quotaflow errors, mapped in exactly one place.

Every ``ApiException`` and every urllib3/socket error the official client raises goes through
:func:`map_kube_error`, so a caller (a Temporal activity) sees one of the classes below and
reads ``retryable`` instead of HTTP statuses:

- 429 with a ``DisruptionBudget`` cause → :class:`EvictionBlocked` (retryable);
- any other 429 (API priority and fairness), 5xx, 408, a timeout, a refused or dropped
  connection → :class:`KubeTransient` (retryable);
- 401, 403 → :class:`KubeForbidden` (not retryable);
- 404 → :class:`KubeNotFound` (not retryable);
- anything else (400, 409, 410, 422, the 500 "more than one PodDisruptionBudget") →
  :class:`KubeApiError` (not retryable), carrying the API's message and status.

404 on an eviction or a delete is *success* ("already gone"): the client checks for it before
mapping, so :class:`KubeNotFound` only reaches callers that read a pod that must exist.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from domain.errors import NotFound, PermissionDenied, QuotaflowError, TransientError

# The eviction subresource refuses a pod covered by two budgets with a plain 500 (no reason):
# retrying cannot help until an operator fixes the budgets, so it is not transient.
_MULTIPLE_BUDGETS = "more than one PodDisruptionBudget"


class _KubeStatus:
    """What every Kubernetes error carries: the HTTP status, the Status ``reason``, the call."""

    status: int | None
    reason: str | None

    def __init__(
        self, message: str, *, status: int | None = None, reason: str | None = None, **details: Any
    ) -> None:
        super().__init__(message, status=status, reason=reason, **details)  # type: ignore[call-arg]
        self.status = status
        self.reason = reason


class EvictionBlocked(_KubeStatus, TransientError):
    """A PodDisruptionBudget forbids the eviction right now (HTTP 429); retry with backoff."""

    code = "kube_eviction_blocked"


class KubeTransient(_KubeStatus, TransientError):
    """The API server is unavailable, overloaded, slow or unreachable; retry."""

    code = "kube_transient"


class KubeForbidden(_KubeStatus, PermissionDenied):
    """Authentication or authorization (RBAC, an admission plugin) refused the call."""

    code = "kube_forbidden"


class KubeNotFound(_KubeStatus, NotFound):
    """The object does not exist (only raised where absence is an error)."""

    code = "kube_not_found"


class KubeApiError(_KubeStatus, QuotaflowError):
    """The API server rejected the request for a reason retrying will not fix."""

    code = "kube_api_error"


# What a call through the official client can raise besides bugs: catch these, then map.
KUBE_CALL_ERRORS = (ApiException, urllib3.exceptions.HTTPError, TimeoutError, ConnectionError)

KubeError = EvictionBlocked | KubeTransient | KubeForbidden | KubeNotFound | KubeApiError


def status_body(exc: ApiException) -> dict[str, Any]:
    """The ``Status`` object of an error response, or ``{}`` when the body is not one."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _is_disruption_budget(body: dict[str, Any]) -> bool:
    causes = (body.get("details") or {}).get("causes") or []
    return any(isinstance(c, dict) and c.get("reason") == "DisruptionBudget" for c in causes)


def map_kube_error(exc: BaseException, *, action: str, name: str | None = None) -> KubeError:
    """Turn whatever the official client raised into one of this module's classes.

    ``action`` ("create pod", "evict pod", …) and ``name`` only make the message readable.
    Anything that is neither an HTTP error nor a network error is a bug and is re-raised.
    """
    where = f"{action} {name}" if name else action
    if isinstance(exc, ApiException):
        body = status_body(exc)
        status = exc.status if isinstance(exc.status, int) else 0
        api_message = str(body.get("message") or exc.reason or "no message")
        reason = body.get("reason") or (exc.reason if isinstance(exc.reason, str) else None)
        message = f"{where}: {api_message} (HTTP {status})"
        details: dict[str, Any] = {"status": status, "reason": reason, "action": action}
        if name is not None:
            details["name"] = name
        if status == 429:
            if _is_disruption_budget(body):
                return EvictionBlocked(message, **details)
            return KubeTransient(message, **details)
        if status in (401, 403):
            return KubeForbidden(message, **details)
        if status == 404:
            return KubeNotFound(message, **details)
        if status >= 500 and _MULTIPLE_BUDGETS in api_message:
            return KubeApiError(message, **details)
        if status >= 500 or status == 408:
            return KubeTransient(message, **details)
        return KubeApiError(message, **details)
    if isinstance(exc, KUBE_CALL_ERRORS):
        return KubeTransient(
            f"{where}: {type(exc).__name__}: {exc}", status=None, reason=None, action=action
        )
    raise exc
