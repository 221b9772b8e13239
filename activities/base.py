"""What every activity class shares: its dependencies and the error translation.

Activities are thin: they call the store and the Kubernetes client. A :class:`QuotaflowError`
becomes an ``ApplicationError`` whose type is the error's class name and whose
``non_retryable`` is ``not error.retryable`` — so a lost database connection or a 5xx is retried
by Temporal, and a permission problem or bad input fails at once with its message.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from domain.errors import QuotaflowError
from k8s.client import KubeClient
from settings import Settings
from store import Store
from store.authz import Authorizer

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Deps:
    """Handed to every activity class by worker.py."""

    store: Store
    kube: KubeClient
    settings: Settings
    client: Client
    executor: Executor

    @property
    def authz(self) -> Authorizer:
        return Authorizer(self.store.db)


def application_error(exc: QuotaflowError) -> ApplicationError:
    return ApplicationError(
        str(exc), exc.to_dict(), type=type(exc).__name__, non_retryable=not exc.retryable
    )


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Re-raise the project's errors as ApplicationErrors (sync and async activities)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await fn(*args, **kwargs)
            except QuotaflowError as exc:
                raise application_error(exc) from exc

        return run_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except QuotaflowError as exc:
            raise application_error(exc) from exc

    return run


class ActivityBase:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.store = deps.store
        self.kube = deps.kube
        self.settings = deps.settings
        self.client = deps.client

    async def blocking(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run database or Kubernetes calls off the event loop, on the worker's thread pool."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs)
        return await loop.run_in_executor(self.deps.executor, call)
