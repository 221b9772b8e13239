"""Report each quotaflow pod's end exactly once: list, then watch, resuming by resourceVersion.

A pod *ends* when it reaches phase Succeeded or Failed, or when it is deleted before reaching
one (outcome ``Deleted``). The watcher survives what a long watch meets:

- the server closes the stream (``timeoutSeconds``) or the connection drops: watch again from
  the last resourceVersion seen, so nothing is missed and nothing replayed;
- 410 Gone (the resourceVersion was compacted away): list again, report terminal pods not yet
  reported, and report as ``Deleted`` the live pods the list no longer has;
- a worker restart: build a new watcher from the checkpointed :attr:`resource_version`.

Within one watcher every pod (by uid) is reported at most once. Across a restart delivery is
at-least-once: endings handed out after the last checkpoint are reported again, and a watcher
that must list (no checkpoint, or a 410) reports every terminal pod still present. Consumers
must therefore be idempotent — signalling a job workflow that already finished is harmless.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from k8s.errors import KUBE_CALL_ERRORS, KubeTransient, map_kube_error
from k8s.models import BackoffPolicy, PodEnding, PodEndingBatch, PodInfo
from k8s.pods import job_selector, pod_info

if TYPE_CHECKING:
    from k8s.client import KubeClient

log = logging.getLogger(__name__)

_TERMINAL = ("Succeeded", "Failed")
_RECONNECT = BackoffPolicy(initial_seconds=0.1, multiplier=2.0, max_seconds=5.0)


# A checkpoint from another cluster, or from before an emulator restart: only a list recovers.
_TOO_LARGE = "Too large resource version"


class _Gone(Exception):
    """The watch's resourceVersion is unusable (410 Gone, or too large): list again."""


@dataclass(frozen=True)
class _Live:
    name: str
    job_id: UUID | None
    attempt: int | None


class PodEndingWatcher:
    """List + watch of quotaflow pods that yields :class:`PodEnding` s.

    ``resource_version`` is the checkpoint: every ending before it has been handed to the
    caller *and the caller came back for more*, so it is safe to persist (heartbeat details)
    at any moment and to resume from with ``PodEndingWatcher(client, checkpoint)``.
    """

    def __init__(self, client: KubeClient, resource_version: str | None = None) -> None:
        self._client = client
        self._resource_version = resource_version
        self._reported: set[str] = set()  # uids of ended pods that still exist
        self._live: dict[str, _Live] = {}  # uids of pods seen not ended yet
        self._relisted = False

    @property
    def resource_version(self) -> str | None:
        return self._resource_version

    def poll(self, timeout_seconds: float) -> PodEndingBatch:
        """Collect the endings of one window of ``timeout_seconds`` (whole seconds, ≥ 1)."""
        self._relisted = False
        endings = list(self.stream(timeout_seconds))
        return PodEndingBatch(
            endings=endings, resource_version=self._resource_version, relisted=self._relisted
        )

    def stream(self, timeout_seconds: float) -> Generator[PodEnding, None, None]:
        """Yield endings as they happen for ``timeout_seconds``, reconnecting as needed.

        Transient failures (5xx, dropped connections) are retried with backoff until the
        window ends; if the window ends on a failure, that :class:`KubeTransient` is raised.
        Non-retryable errors (403 …) are raised at once.
        """
        deadline = time.monotonic() + timeout_seconds
        failures = 0
        while True:
            try:
                if self._resource_version is None:
                    yield from self._relist()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                yield from self._watch(remaining)
                failures = 0
            except _Gone:
                log.info(
                    "pod watch: resourceVersion %s expired; listing again", self._resource_version
                )
                self._resource_version = None
            except KubeTransient as exc:
                failures += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                log.info("pod watch: %s; reconnecting", exc)
                time.sleep(min(_RECONNECT.delay(failures), remaining))
            if time.monotonic() >= deadline:
                return

    # --- one list, one watch -----------------------------------------------------------

    def _relist(self) -> Iterator[PodEnding]:
        self._relisted = True
        pods, list_version = self._client.list_pods_at(job_selector())
        present = {pod.uid for pod in pods}
        endings: list[PodEnding] = []
        for uid, live in list(self._live.items()):
            if uid not in present:
                # Deleted while we were not watching: the DELETED event is lost for good.
                del self._live[uid]
                endings.append(
                    PodEnding(
                        pod_name=live.name,
                        uid=uid,
                        job_id=live.job_id,
                        attempt=live.attempt,
                        outcome="Deleted",
                        message="deleted while the watch was interrupted",
                        resource_version=list_version or "",
                    )
                )
        self._reported &= present
        for pod in pods:
            ending = self._observe("ADDED", pod)
            if ending is not None:
                endings.append(ending)
        for ending in endings:
            yield ending
        self._resource_version = list_version

    def _watch(self, remaining: float) -> Iterator[PodEnding]:
        client = self._client
        window = max(1, math.ceil(remaining))
        stream = watch.Watch().stream(
            client.core.list_namespaced_pod,
            client.namespace,
            label_selector=job_selector(),
            resource_version=self._resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=window,
            # The server ends the window; the read timeout only catches a server gone silent.
            _request_timeout=(
                client.request_timeout_seconds,
                window + client.request_timeout_seconds,
            ),
        )
        try:
            for event in stream:
                raw: dict[str, Any] = event["raw_object"]
                version = (raw.get("metadata") or {}).get("resourceVersion")
                if event["type"] != "BOOKMARK":
                    ending = self._observe(event["type"], pod_info(raw))
                    if ending is not None:
                        yield ending
                if version:
                    self._resource_version = str(version)
        except ApiException as exc:
            if exc.status == 410 or _TOO_LARGE in f"{exc.reason} {exc.body}":
                raise _Gone from exc
            raise map_kube_error(exc, action="watch pods") from exc
        except KUBE_CALL_ERRORS as exc:
            raise map_kube_error(exc, action="watch pods") from exc
        finally:
            stream.close()

    def _observe(self, event_type: str, pod: PodInfo) -> PodEnding | None:
        """Update what we know of the pod; return its ending if this event is it."""
        uid = pod.uid
        if event_type == "DELETED":
            self._live.pop(uid, None)
            if uid in self._reported:
                self._reported.discard(uid)
                return None
            if pod.phase in _TERMINAL:
                # Its terminal phase came in an earlier event, before this watcher's starting
                # point (a checkpoint, whose owner reported it) or during it (reported above).
                return None
            return self._ending(pod, "Deleted")
        if uid in self._reported:
            return None
        if pod.phase in _TERMINAL:
            self._live.pop(uid, None)
            self._reported.add(uid)
            return self._ending(pod, "Succeeded" if pod.phase == "Succeeded" else "Failed")
        self._live[uid] = _Live(pod.name, pod.job_id, pod.attempt)
        return None

    @staticmethod
    def _ending(pod: PodInfo, outcome: str) -> PodEnding:
        message = pod.message
        if outcome == "Deleted" and not message:
            message = "deleted before it finished"
        return PodEnding.model_validate(
            {
                "pod_name": pod.name,
                "uid": pod.uid,
                "job_id": pod.job_id,
                "attempt": pod.attempt,
                "outcome": outcome,
                "message": message,
                "exit_code": pod.exit_code,
                "disruption_reason": pod.disruption_reason,
                "resource_version": pod.resource_version,
            }
        )
