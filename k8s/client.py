"""The synchronous Kubernetes client quotaflow's activities call.

The official client is synchronous: call these methods from synchronous Temporal activities
(a thread pool), never from inside an event loop. One :class:`KubeClient` is thread-safe and
meant to be shared by every activity of a worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from kubernetes.client import ApiClient, CoreV1Api, V1DeleteOptions, V1Eviction, V1ObjectMeta, V1Pod
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from domain.errors import InvalidInput, QuotaflowError
from k8s.config import api_client_from_settings
from k8s.errors import (
    KUBE_CALL_ERRORS,
    EvictionBlocked,
    KubeApiError,
    KubeTransient,
    map_kube_error,
)
from k8s.models import BackoffPolicy, EvictionResult, PodEndingBatch, PodInfo, PodRequest
from k8s.pods import build_pod_manifest, job_selector, pod_info, pod_name
from k8s.watcher import PodEndingWatcher
from settings import Settings, get_settings

log = logging.getLogger(__name__)

RetryHook = Callable[[QuotaflowError, int], None]

# What _request returns when the call answered with the status the caller expected.
_EXPECTED = object()


class KubeClient:
    """Pods of admitted jobs in one namespace: create, read, list, evict, delete, watch."""

    def __init__(
        self,
        api_client: ApiClient,
        namespace: str,
        *,
        priority_class_prefix: str = "quotaflow-",
        default_image: str = "busybox:1.36",
        request_timeout_seconds: float = 10.0,
    ) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.priority_class_prefix = priority_class_prefix
        self.default_image = default_image
        self.request_timeout_seconds = request_timeout_seconds
        self.core = CoreV1Api(api_client)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> KubeClient:
        settings = settings or get_settings()
        return cls(
            api_client_from_settings(settings),
            settings.kube_namespace,
            priority_class_prefix=settings.kube_priority_class_prefix,
            default_image=settings.kube_default_image,
            request_timeout_seconds=settings.kube_request_timeout_seconds,
        )

    def close(self) -> None:
        self.api_client.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- pods ----------------------------------------------------------------------------

    pod_name = staticmethod(pod_name)

    def pod_manifest(self, req: PodRequest) -> dict[str, Any]:
        """The pod :meth:`create_job_pod` sends, as a JSON-shaped dict."""
        return build_pod_manifest(
            req,
            namespace=self.namespace,
            priority_class_prefix=self.priority_class_prefix,
            default_image=self.default_image,
        )

    def create_job_pod(self, req: PodRequest) -> PodInfo:
        """Create the pod of one attempt of a job; creating it again returns the same pod."""
        manifest = self.pod_manifest(req)
        name = manifest["metadata"]["name"]
        body = self._pod_body(manifest)
        created = self._request(
            "create pod",
            name,
            lambda: self.core.create_namespaced_pod(
                self.namespace, body, _request_timeout=self.request_timeout_seconds
            ),
            expected=409,
        )
        if created is _EXPECTED:
            return self._existing_pod(req, name)
        return self._info(created)

    def _existing_pod(self, req: PodRequest, name: str) -> PodInfo:
        existing = self.get_pod(name)
        if existing is None:
            # Deleted between our create and our read: the caller's retry creates it anew.
            raise KubeTransient(f"create pod {name}: it vanished while being read back", status=409)
        if existing.job_id != req.job_id or existing.attempt != req.attempt:
            raise KubeApiError(
                f"create pod {name}: the name is taken by a pod of job {existing.job_id} "
                f"attempt {existing.attempt}",
                status=409,
                reason="AlreadyExists",
            )
        return existing

    def get_pod(self, name: str) -> PodInfo | None:
        """The pod, or None when it does not exist (any more)."""
        pod = self._request(
            "read pod",
            name,
            lambda: self.core.read_namespaced_pod(
                name, self.namespace, _request_timeout=self.request_timeout_seconds
            ),
            expected=404,
        )
        return None if pod is _EXPECTED else self._info(pod)

    def pod_phase(self, name: str) -> str | None:
        """Pending, Running, Succeeded, Failed or Unknown; None when the pod is gone."""
        pod = self.get_pod(name)
        return pod.phase if pod else None

    def list_job_pods(self, job_id: UUID | None = None) -> list[PodInfo]:
        """Every quotaflow pod of the namespace, or those of one job."""
        return self.list_pods_at(job_selector(job_id))[0]

    def list_pods_at(self, label_selector: str) -> tuple[list[PodInfo], str | None]:
        """Pods matching ``label_selector`` and the resourceVersion of the list."""
        pods = self._request(
            "list pods",
            None,
            lambda: self.core.list_namespaced_pod(
                self.namespace,
                label_selector=label_selector,
                _request_timeout=self.request_timeout_seconds,
            ),
        )
        raw = self.api_client.sanitize_for_serialization(pods)
        items = [pod_info(item) for item in raw.get("items") or []]
        return items, (raw.get("metadata") or {}).get("resourceVersion")

    def delete_pod(self, name: str, grace_seconds: int | None = None) -> bool:
        """Delete the pod (gracefully unless ``grace_seconds`` is 0); False if it was gone."""
        options = V1DeleteOptions(grace_period_seconds=grace_seconds)
        deleted = self._request(
            "delete pod",
            name,
            lambda: self.core.delete_namespaced_pod(
                name,
                self.namespace,
                grace_period_seconds=grace_seconds,
                body=options,
                _request_timeout=self.request_timeout_seconds,
            ),
            expected=404,
        )
        return deleted is not _EXPECTED

    # --- eviction ------------------------------------------------------------------------

    def evict_pod(self, name: str, grace_seconds: int | None = None) -> EvictionResult:
        """One request to the Eviction API (policy/v1), honouring PodDisruptionBudgets.

        201 → evicted; 404 → already gone (success); 429 → :class:`EvictionBlocked`;
        5xx / timeouts → :class:`KubeTransient`; 401/403 → :class:`KubeForbidden`.
        """
        eviction = V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=V1ObjectMeta(name=name, namespace=self.namespace),
            delete_options=(
                V1DeleteOptions(grace_period_seconds=grace_seconds)
                if grace_seconds is not None
                else None
            ),
        )
        answer = self._request(
            "evict pod",
            name,
            lambda: self.core.create_namespaced_pod_eviction(
                name, self.namespace, eviction, _request_timeout=self.request_timeout_seconds
            ),
            expected=404,
        )
        if answer is _EXPECTED:
            return EvictionResult(pod_name=name, outcome="already_gone")
        return EvictionResult(pod_name=name, outcome="evicted")

    def evict_until(
        self,
        name: str,
        grace_seconds: int | None,
        deadline_seconds: float,
        backoff: BackoffPolicy | None = None,
        *,
        on_retry: RetryHook | None = None,
    ) -> EvictionResult:
        """Evict, retrying 429s, 5xx and timeouts with backoff until ``deadline_seconds``.

        The last attempt is made at the deadline; if it fails too, its error is raised.
        Non-retryable errors (403, 422, …) are raised at once. ``on_retry(error, attempt)``
        runs before each wait — an activity heartbeats there.
        """
        backoff = backoff or BackoffPolicy()
        deadline = time.monotonic() + deadline_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self.evict_pod(name, grace_seconds)
            except (EvictionBlocked, KubeTransient) as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                log.info("evict %s: attempt %d: %s; retrying", name, attempt, exc)
                if on_retry is not None:
                    on_retry(exc, attempt)
                time.sleep(min(backoff.delay(attempt), remaining))
                continue
            return result.model_copy(update={"attempts": attempt})

    # --- endings -------------------------------------------------------------------------

    def pod_ending_watcher(self, resource_version: str | None = None) -> PodEndingWatcher:
        """A watcher of quotaflow pod endings, resuming after ``resource_version`` if given."""
        return PodEndingWatcher(self, resource_version)

    def watch_pod_endings(
        self, resource_version: str | None, timeout_seconds: float
    ) -> PodEndingBatch:
        """One window of :meth:`PodEndingWatcher.poll` from a checkpoint (stateless form)."""
        return self.pod_ending_watcher(resource_version).poll(timeout_seconds)

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    def _request(
        action: str, name: str | None, call: Callable[[], Any], *, expected: int | None = None
    ) -> Any:
        """Make one API call; ``expected`` is an HTTP status that is an answer, not an error
        (404 "already gone", 409 "already there"): it returns ``_EXPECTED``."""
        try:
            return call()
        except ApiException as exc:
            if expected is not None and exc.status == expected:
                return _EXPECTED
            raise map_kube_error(exc, action=action, name=name) from exc
        except KUBE_CALL_ERRORS as exc:
            raise map_kube_error(exc, action=action, name=name) from exc

    @staticmethod
    def _pod_body(manifest: dict[str, Any]) -> V1Pod:
        try:
            body = V1Pod.from_dict(manifest)
        except ValidationError as exc:
            # Only the storage's placement fields come from outside as free-form objects.
            raise InvalidInput(str(exc), field="affinity_config") from exc
        assert body is not None
        return body

    def _info(self, pod: V1Pod) -> PodInfo:
        return pod_info(self.api_client.sanitize_for_serialization(pod))
