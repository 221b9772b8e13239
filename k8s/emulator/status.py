"""``Status`` bodies shaped like the ones a real API server sends.

The official client only reads the HTTP status, but quotaflow's error mapping (and anyone
debugging) reads ``reason``, ``message`` and ``details``, so the shapes follow
``k8s.io/apimachinery/pkg/api/errors``: ``kind: Status``, ``apiVersion: v1``,
``status: Failure``, then ``message``, ``reason``, ``details`` and ``code``.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised inside the emulator; the HTTP layer answers with :attr:`body`."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.body = body

    @property
    def code(self) -> int:
        return int(self.body["code"])


def failure(
    code: int, reason: str | None, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def success(code: int) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}


def _details(resource: str, name: str, group: str) -> dict[str, Any]:
    return (
        {"name": name, "group": group, "kind": resource}
        if group
        else {"name": name, "kind": resource}
    )


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    kind = f"{resource}.{group}" if group else resource
    return ApiError(
        failure(404, "NotFound", f'{kind} "{name}" not found', _details(resource, name, group))
    )


def path_not_found() -> ApiError:
    return ApiError(
        failure(404, "NotFound", "the server could not find the requested resource", {})
    )


def already_exists(
    resource: str, name: str, group: str = "", *, terminating: bool = False
) -> ApiError:
    kind = f"{resource}.{group}" if group else resource
    prefix = "object is being deleted: " if terminating else ""
    return ApiError(
        failure(
            409,
            "AlreadyExists",
            f'{prefix}{kind} "{name}" already exists',
            _details(resource, name, group),
        )
    )


def invalid(kind: str, name: str, causes: list[tuple[str, str, str]], group: str = "") -> ApiError:
    """422: ``causes`` are ``(reason, field, message)``, e.g. ``FieldValueRequired``."""
    summary = ", ".join(f"{field}: {message}" for _, field, message in causes)
    shown = f"[{summary}]" if len(causes) > 1 else summary
    qualified = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    details["causes"] = [
        {"reason": reason, "message": message, "field": field} for reason, field, message in causes
    ]
    return ApiError(failure(422, "Invalid", f'{qualified} "{name}" is invalid: {shown}', details))


def bad_request(message: str) -> ApiError:
    return ApiError(failure(400, "BadRequest", message))


def forbidden(resource: str, name: str, why: str) -> ApiError:
    return ApiError(
        failure(
            403,
            "Forbidden",
            f'{resource} "{name}" is forbidden: {why}',
            {"name": name, "kind": resource},
        )
    )


def unauthorized() -> ApiError:
    return ApiError(failure(401, "Unauthorized", "Unauthorized"))


def method_not_allowed() -> ApiError:
    return ApiError(
        failure(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            {},
        )
    )


def too_many_requests_budget(budget: str, desired: int, healthy: int) -> ApiError:
    return ApiError(
        failure(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
            {
                "causes": [
                    {
                        "reason": "DisruptionBudget",
                        "message": f"The disruption budget {budget} needs {desired} healthy "
                        f"pods and has {healthy} currently",
                    }
                ]
            },
        )
    )


def multiple_budgets() -> ApiError:
    # The real eviction handler returns this Status without a reason.
    return ApiError(
        failure(
            500,
            None,
            "This pod has more than one PodDisruptionBudget, which the eviction subresource "
            "does not support.",
        )
    )


def internal_error(message: str) -> ApiError:
    return ApiError(
        failure(
            500,
            "InternalError",
            f"Internal error occurred: {message}",
            {"causes": [{"message": message}]},
        )
    )


def service_unavailable(message: str) -> ApiError:
    return ApiError(failure(503, "ServiceUnavailable", message))


def gateway_timeout(message: str) -> ApiError:
    return ApiError(failure(504, "Timeout", message, {}))


def expired(requested: int, oldest: int) -> dict[str, Any]:
    return failure(410, "Expired", f"too old resource version: {requested} ({oldest})")


def too_large_resource_version(requested: int, current: int) -> dict[str, Any]:
    return failure(
        504,
        "Timeout",
        f"Too large resource version: {requested}, current: {current}",
        {
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
    )


def for_code(code: int, resource: str, name: str, verb: str) -> ApiError:
    """The body a real server would send with ``code`` (used by fault injection)."""
    if code == 401:
        return unauthorized()
    if code == 403:
        return forbidden(
            resource,
            name,
            f'User "system:serviceaccount:quotaflow:quotaflow-worker" cannot {verb} resource '
            f'"{resource}" in API group "" (injected fault)',
        )
    if code == 404:
        return not_found(resource, name)
    if code == 409:
        return already_exists(resource, name)
    if code == 429:
        return ApiError(
            failure(
                429,
                "TooManyRequests",
                "Too many requests, please try again later. (injected fault)",
                {"retryAfterSeconds": 1},
            )
        )
    if code == 503:
        return service_unavailable(
            "the server is currently unable to handle the request (injected fault)"
        )
    if code == 504:
        return gateway_timeout(
            "the server was unable to return a response in the time allotted (injected fault)"
        )
    if code >= 500:
        return internal_error("injected fault")
    return ApiError(
        failure(code, "BadRequest" if code == 400 else None, f"injected fault (HTTP {code})")
    )
