"""The emulated cluster: objects, resource versions, the watch log, pod lifecycles, evictions.

Every method runs on the emulator's event loop thread, and none awaits, so each one is atomic
with respect to every other request and watcher: that is the whole concurrency story. Callers
in other threads go through :meth:`k8s.emulator.server.EmulatorServer._call`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from k8s.emulator import admission, status
from k8s.emulator.selectors import Selector, SelectorError, label_selector

log = logging.getLogger(__name__)

# Pod annotations the emulator reads to play a workload; a real cluster ignores them.
START_SECONDS = "emulator.quotaflow.io/start-seconds"
RUN_SECONDS = "emulator.quotaflow.io/run-seconds"
OUTCOME = "emulator.quotaflow.io/outcome"

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    api_version: str
    group: str
    namespaced: bool


PODS = Resource("pods", "Pod", "v1", "", True)
PDBS = Resource("poddisruptionbudgets", "PodDisruptionBudget", "policy/v1", "policy", True)
PRIORITY_CLASSES = Resource(
    "priorityclasses", "PriorityClass", "scheduling.k8s.io/v1", "scheduling.k8s.io", False
)
RESOURCES = {r.plural: r for r in (PODS, PDBS, PRIORITY_CLASSES)}

DEFAULT_PRIORITY_CLASSES: dict[str, int] = {
    "quotaflow-low": 100,
    "quotaflow-normal": 1000,
    "quotaflow-high": 10000,
    "system-cluster-critical": 2000000000,
    "system-node-critical": 2000001000,
}


class EmulatorConfig(BaseModel):
    """Knobs of the emulated cluster (all have test-friendly defaults)."""

    start_delay_seconds: float = Field(
        default=0.05, ge=0, description="Pending → Running, unless a pod's annotation says."
    )
    history_limit: int = Field(
        default=10_000, ge=1, description="Watch events kept; older resourceVersions get 410."
    )
    watch_max_seconds: float = Field(
        default=1800, gt=0, description="Longest watch: the server ends it then at the latest."
    )
    priority_classes: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_PRIORITY_CLASSES),
        description="PriorityClasses that exist at start (more can be created via the API).",
    )
    enforce_pod_security: bool = Field(
        default=True, description='Reject pods that break Pod Security "restricted" (403).'
    )
    node_name: str = "emulator-node"


class Timer(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], Timer]


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    resource: str
    namespace: str | None
    type: EventType
    object: dict[str, Any]

    def wire(self) -> dict[str, Any]:
        return {"type": self.type, "object": self.object}


@dataclass(eq=False)
class Watcher:
    resource: str
    namespace: str | None
    selector: Selector
    fields: dict[str, tuple[str, str]]
    push: Callable[[WatchEvent], None]

    def wants(self, event: WatchEvent) -> bool:
        if event.resource != self.resource:
            return False
        if self.namespace is not None and event.namespace != self.namespace:
            return False
        return matches(event.object, self.selector, self.fields)


class Expired(Exception):
    """A watch asked for a resourceVersion older than the kept history (HTTP 410 in-stream)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.body = status.expired(requested, oldest)


class TooLarge(Exception):
    """A watch asked for a resourceVersion the server has not reached (504 in-stream)."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"too large resource version: {requested} ({current})")
        self.body = status.too_large_resource_version(requested, current)


_POD_FIELDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "metadata.name": lambda o: o["metadata"].get("name", ""),
    "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
    "status.phase": lambda o: (o.get("status") or {}).get("phase", ""),
    "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName", ""),
}


def parse_field_selector(text: str | None) -> dict[str, tuple[str, str]]:
    """``status.phase=Running,metadata.name!=x`` → ``{field: (operator, value)}``."""
    result: dict[str, tuple[str, str]] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        operator = "!=" if "!=" in part else "="
        key, _, value = part.replace("==", "=").partition(operator)
        key = key.strip()
        if key not in _POD_FIELDS:
            raise status.bad_request(f'field label not supported: "{key}"')
        result[key] = (operator, value.strip())
    return result


def matches(obj: dict[str, Any], selector: Selector, fields: dict[str, tuple[str, str]]) -> bool:
    if not selector.matches(obj["metadata"].get("labels")):
        return False
    for key, (operator, value) in fields.items():
        actual = _POD_FIELDS[key](obj)
        if (actual == value) != (operator == "="):
            return False
    return True


def timestamp(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _is_terminating(obj: dict[str, Any]) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _annotation_seconds(pod: dict[str, Any], key: str) -> float | None:
    raw = (pod["metadata"].get("annotations") or {}).get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        log.warning("pod %s: ignoring annotation %s=%r", pod["metadata"]["name"], key, raw)
        return None
    return value if value >= 0 and math.isfinite(value) else None


@dataclass
class _PodTimers:
    handles: list[Timer] = field(default_factory=list)
    removal_at: float | None = None  # monotonic deadline of a graceful deletion

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()
        self.handles.clear()


class ClusterState:
    """Objects by resource, one resourceVersion counter (like etcd's revision), one event log."""

    def __init__(self, call_later: CallLater, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._call_later = call_later
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {r: {} for r in RESOURCES}
        self._revision = 0
        self._log: deque[WatchEvent] = deque()
        self._oldest_watchable = 0  # a watch from resourceVersion >= this misses nothing
        self._watchers: set[Watcher] = set()
        self._timers: dict[str, _PodTimers] = {}
        self.watches_served = 0
        for name, value in self.config.priority_classes.items():
            # As in deploy/k8s/priority-classes.yaml: quotaflow's classes never preempt.
            policy = "Never" if name.startswith("quotaflow-") else "PreemptLowerPriority"
            self.create(
                "priorityclasses",
                None,
                {"metadata": {"name": name}, "value": value, "preemptionPolicy": policy},
            )

    # --- bookkeeping -------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    def _record(self, resource: Resource, type_: EventType, obj: dict[str, Any]) -> None:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        event = WatchEvent(
            self._revision,
            resource.plural,
            obj["metadata"].get("namespace"),
            type_,
            {"kind": resource.kind, "apiVersion": resource.api_version, **copy.deepcopy(obj)},
        )
        self._log.append(event)
        while len(self._log) > self.config.history_limit:
            self._oldest_watchable = self._log.popleft().resource_version
        for watcher in list(self._watchers):
            if watcher.wants(event):
                watcher.push(event)

    def _store(self, resource: Resource) -> dict[tuple[str, str], dict[str, Any]]:
        return self._objects[resource.plural]

    def _key(self, resource: Resource, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "" if resource.namespaced else "", name)

    def _find(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._store(resource).get(self._key(resource, namespace, name))
        if obj is None:
            raise status.not_found(resource.plural, name, resource.group)
        return obj

    def _out(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        body = {"kind": resource.kind, "apiVersion": resource.api_version, **copy.deepcopy(obj)}
        if resource is PDBS:
            body["status"] = self._budget_status(obj)
        return body

    # --- generic verbs -----------------------------------------------------------------

    def create(self, plural: str, namespace: str | None, body: Any) -> dict[str, Any]:
        resource = RESOURCES[plural]
        if not isinstance(body, dict):
            raise status.bad_request("the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        obj.pop("kind", None)
        obj.pop("apiVersion", None)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise status.bad_request("metadata must be an object")
        if resource.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise status.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = namespace
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if resource is PODS:
            admission.validate_pod(obj)
        else:
            causes = admission.check_name(resource.kind, meta) + admission.check_labels(meta)
            causes += self._validate_other(resource, obj)
            if causes:
                raise status.invalid(resource.kind, meta.get("name", ""), causes, resource.group)
        key = self._key(resource, namespace, meta["name"])
        existing = self._store(resource).get(key)
        if existing is not None:
            raise status.already_exists(
                plural, meta["name"], resource.group, terminating=_is_terminating(existing)
            )
        if resource is PODS:
            admission.admit_pod(obj, self._priority_classes(), self.config.enforce_pod_security)
            admission.default_pod(obj)
        for transient in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(transient, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = timestamp()
        if resource is PDBS:
            meta["generation"] = 1
            obj.pop("status", None)
        self._store(resource)[key] = obj
        self._record(resource, "ADDED", obj)
        if resource is PODS:
            self._schedule_start(obj)
        return self._out(resource, obj)

    def _validate_other(self, resource: Resource, obj: dict[str, Any]) -> list[admission.Cause]:
        if resource is PDBS:
            spec = obj.get("spec") or {}
            causes: list[admission.Cause] = []
            if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
                causes.append(
                    (
                        "FieldValueInvalid",
                        "spec",
                        "Invalid value: minAvailable and maxUnavailable cannot be both set",
                    )
                )
            for key in ("minAvailable", "maxUnavailable"):
                value = spec.get(key)
                if value is not None and _budget_value(value) is None:
                    causes.append(("FieldValueInvalid", f"spec.{key}", f"Invalid value: {value!r}"))
            try:
                label_selector(spec.get("selector"))
            except SelectorError as exc:
                causes.append(("FieldValueInvalid", "spec.selector", str(exc)))
            return causes
        if resource is PRIORITY_CLASSES and not isinstance(obj.get("value"), int):
            return [("FieldValueRequired", "value", "Required value")]
        return []

    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        resource = RESOURCES[plural]
        return self._out(resource, self._find(resource, namespace, name))

    def list_objects(
        self,
        plural: str,
        namespace: str | None,
        selector: Selector,
        fields: dict[str, tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        resource = RESOURCES[plural]
        items = []
        for (ns, _), obj in sorted(self._store(resource).items()):
            if resource.namespaced and namespace is not None and ns != namespace:
                continue
            if matches(obj, selector, fields or {}):
                item = self._out(resource, obj)
                # Items of a real list carry neither kind nor apiVersion.
                item.pop("kind")
                item.pop("apiVersion")
                items.append(item)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    def delete(
        self, plural: str, namespace: str | None, name: str, grace_seconds: int | None
    ) -> dict[str, Any]:
        resource = RESOURCES[plural]
        obj = self._find(resource, namespace, name)
        if resource is PODS:
            self._delete_pod(obj, grace_seconds)
            return self._out(resource, obj)
        self._remove(resource, obj)
        return status.success(200) | {
            "details": {
                "name": name,
                "group": resource.group,
                "kind": plural,
                "uid": obj["metadata"]["uid"],
            }
        }

    def _remove(self, resource: Resource, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        del self._store(resource)[self._key(resource, meta.get("namespace"), meta["name"])]
        timers = self._timers.pop(meta.get("uid", ""), None)
        if timers:
            timers.cancel()
        self._record(resource, "DELETED", obj)

    def _priority_classes(self) -> dict[str, dict[str, Any]]:
        return {name: pc for (_, name), pc in self._store(PRIORITY_CLASSES).items()}

    # --- watch -------------------------------------------------------------------------

    def open_watch(
        self,
        plural: str,
        namespace: str | None,
        selector: Selector,
        fields: dict[str, tuple[str, str]],
        resource_version: str | None,
        push: Callable[[WatchEvent], None],
    ) -> tuple[list[WatchEvent], Watcher]:
        """Register a watcher; return the events it must see first (replayed or synthetic)."""
        resource = RESOURCES[plural]
        watcher = Watcher(
            plural, namespace if resource.namespaced else None, selector, fields, push
        )
        if resource_version in (None, "", "0"):
            # "Start at most recent": the current state as synthetic ADDED events.
            snapshot = self.list_objects(plural, namespace, selector, fields)["items"]
            backlog = [
                WatchEvent(
                    int(item["metadata"]["resourceVersion"]),
                    plural,
                    item["metadata"].get("namespace"),
                    "ADDED",
                    {"kind": resource.kind, "apiVersion": resource.api_version, **item},
                )
                for item in snapshot
            ]
        else:
            try:
                since = int(str(resource_version))
            except ValueError as exc:
                raise status.bad_request(f"invalid resource version {resource_version!r}") from exc
            if since < self._oldest_watchable:
                raise Expired(since, self._oldest_watchable)
            if since > self._revision:
                # A resourceVersion from the future: another cluster, or this emulator before
                # a restart. A real server waits a few seconds for it, then gives up like this.
                raise TooLarge(since, self._revision)
            backlog = [e for e in self._log if e.resource_version > since and watcher.wants(e)]
        self._watchers.add(watcher)
        return backlog, watcher

    def close_watch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def compact(self) -> int:
        """Forget the watch history, as etcd compaction does: older resourceVersions get 410."""
        self._log.clear()
        self._oldest_watchable = self._revision
        return self._revision

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    # --- pod lifecycle -----------------------------------------------------------------

    def _timers_of(self, pod: dict[str, Any]) -> _PodTimers:
        return self._timers.setdefault(pod["metadata"]["uid"], _PodTimers())

    def _later(self, pod: dict[str, Any], delay: float, action: Callable[[], None]) -> None:
        uid = pod["metadata"]["uid"]

        def fire() -> None:
            # The pod may be gone, or replaced by a new one of the same name.
            if uid in self._timers:
                action()

        self._timers_of(pod).handles.append(self._call_later(delay, fire))

    def _schedule_start(self, pod: dict[str, Any]) -> None:
        delay = _annotation_seconds(pod, START_SECONDS)
        self._later(
            pod,
            self.config.start_delay_seconds if delay is None else delay,
            lambda: self._start(pod),
        )

    def _start(self, pod: dict[str, Any]) -> None:
        if _is_terminating(pod) or pod["status"]["phase"] != "Pending":
            return
        now = timestamp()
        pod["spec"]["nodeName"] = self.config.node_name
        pod["status"].update(
            phase="Running",
            startTime=now,
            hostIP="10.0.0.1",
            podIP=f"10.244.0.{(self._revision % 250) + 2}",
            conditions=[
                _condition(kind, "True", now)
                for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            containerStatuses=[
                _container_status(c, {"running": {"startedAt": now}}, ready=True)
                for c in pod["spec"]["containers"]
            ],
        )
        self._record(PODS, "MODIFIED", pod)
        run = _annotation_seconds(pod, RUN_SECONDS)
        if run is not None:
            outcome = (pod["metadata"].get("annotations") or {}).get(OUTCOME, "Succeeded")
            phase = "Failed" if outcome == "Failed" else "Succeeded"
            self._later(pod, run, lambda: self.finish_pod(pod, phase))

    def finish_pod(
        self, pod: dict[str, Any], phase: str, message: str = "", exit_code: int | None = None
    ) -> None:
        """The workload ended: the kubelet reports a terminal phase."""
        if _is_terminal(pod):
            return
        if exit_code is None:
            exit_code = 0 if phase == "Succeeded" else 1
        now = timestamp()
        started = pod["status"].get("startTime", now)
        reason = "Completed" if exit_code == 0 else "Error"
        conditions = [
            c
            for c in pod["status"].get("conditions") or []
            if c["type"] not in ("Ready", "ContainersReady")
        ]
        conditions += [
            _condition("ContainersReady", "False", now, "PodCompleted"),
            _condition("Ready", "False", now, "PodCompleted"),
        ]
        pod["status"].update(
            phase=phase,
            conditions=conditions,
            containerStatuses=[
                _container_status(
                    c,
                    {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": reason,
                            "startedAt": started,
                            "finishedAt": now,
                        }
                    },
                    ready=False,
                )
                for c in pod["spec"]["containers"]
            ],
        )
        if message:
            pod["status"]["message"] = message
        timers = self._timers_of(pod)
        if timers.removal_at is None:
            timers.cancel()
        self._record(PODS, "MODIFIED", pod)

    def end_pod(self, namespace: str, name: str, phase: str, message: str = "") -> dict[str, Any]:
        """Make a pod end now (a crash, a node failure) — for tests."""
        if phase not in ("Succeeded", "Failed"):
            raise status.bad_request(f"phase must be Succeeded or Failed, not {phase!r}")
        pod = self._find(PODS, namespace, name)
        if pod["status"]["phase"] == "Pending":
            self._start(pod)
        self.finish_pod(pod, phase, message)
        return self._out(PODS, pod)

    def _delete_pod(self, pod: dict[str, Any], grace_seconds: int | None) -> None:
        grace = (
            pod["spec"].get("terminationGracePeriodSeconds", 30)
            if grace_seconds is None
            else grace_seconds
        )
        grace = 1 if grace < 0 else grace
        # A pod no kubelet runs (unscheduled or already finished) has nothing to wait for.
        if not pod["spec"].get("nodeName") or _is_terminal(pod):
            grace = 0
        timers = self._timers_of(pod)
        if grace == 0:
            if not _is_terminating(pod):
                pod["metadata"]["deletionTimestamp"] = timestamp()
                pod["metadata"]["deletionGracePeriodSeconds"] = 0
            self._remove(PODS, pod)
            return
        deadline = time.monotonic() + grace
        if timers.removal_at is not None and timers.removal_at <= deadline:
            return  # already terminating, and sooner: a longer grace never extends it
        timers.cancel()
        timers.removal_at = deadline
        pod["metadata"]["deletionTimestamp"] = timestamp(time.time() + grace)
        pod["metadata"]["deletionGracePeriodSeconds"] = grace
        self._record(PODS, "MODIFIED", pod)
        self._later(pod, grace, lambda: self._terminated(pod))

    def _terminated(self, pod: dict[str, Any]) -> None:
        # The kubelet killed the workload (it ignored SIGTERM for the whole grace period): it
        # reports a terminal phase first, then confirms the deletion, as kubelets since 1.27 do.
        if not _is_terminal(pod):
            self.finish_pod(pod, "Failed", exit_code=137)
        self._remove(PODS, pod)

    # --- eviction ----------------------------------------------------------------------

    def evict(self, namespace: str, name: str, eviction: Any) -> dict[str, Any]:
        if not isinstance(eviction, dict):
            raise status.bad_request("the body of the request was in an unknown format")
        meta = eviction.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise status.bad_request("name in URL does not match name in Eviction object")
        options = eviction.get("deleteOptions") or {}
        grace = options.get("gracePeriodSeconds")
        if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
            raise status.bad_request(f"invalid gracePeriodSeconds {grace!r}")
        pod = self._find(PODS, namespace, name)
        phase = pod["status"]["phase"]
        # Pending, finished or terminating pods are not protected by budgets.
        if phase in ("Pending", "Succeeded", "Failed") or _is_terminating(pod):
            self._delete_pod(pod, grace)
            return status.success(201)
        budgets = [
            b
            for b in self._store(PDBS).values()
            if b["metadata"]["namespace"] == namespace and self._budget_selects(b, pod)
        ]
        if len(budgets) > 1:
            raise status.multiple_budgets()
        if budgets:
            budget = self._budget_status(budgets[0])
            if budget["disruptionsAllowed"] <= 0:
                raise status.too_many_requests_budget(
                    budgets[0]["metadata"]["name"],
                    budget["desiredHealthy"],
                    budget["currentHealthy"],
                )
        now = timestamp()
        pod["status"].setdefault("conditions", []).append(
            _condition(
                "DisruptionTarget", "True", now, "EvictionByEvictionAPI", "Eviction API: evicting"
            )
        )
        self._delete_pod(pod, grace)
        return status.success(201)

    def _budget_selects(self, budget: dict[str, Any], pod: dict[str, Any]) -> bool:
        try:
            selector = label_selector((budget.get("spec") or {}).get("selector"))
        except SelectorError:
            return False
        # An empty budget selector selects nothing, not everything.
        return not selector.empty and selector.matches(pod["metadata"].get("labels"))

    def _budget_status(self, budget: dict[str, Any]) -> dict[str, Any]:
        namespace = budget["metadata"]["namespace"]
        pods = [
            p
            for (ns, _), p in self._store(PODS).items()
            if ns == namespace and self._budget_selects(budget, p)
        ]
        # Bare pods are not replaced, so "expected" is every selected pod not finished yet.
        expected = sum(1 for p in pods if not _is_terminal(p))
        healthy = sum(
            1 for p in pods if p["status"]["phase"] == "Running" and not _is_terminating(p)
        )
        spec = budget.get("spec") or {}
        desired = 0
        if spec.get("minAvailable") is not None:
            desired = _scaled(_budget_value(spec["minAvailable"]), expected)
        elif spec.get("maxUnavailable") is not None:
            desired = max(0, expected - _scaled(_budget_value(spec["maxUnavailable"]), expected))
        allowed = max(0, healthy - desired)
        return {
            "observedGeneration": budget["metadata"].get("generation", 1),
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": [
                {
                    "type": "DisruptionAllowed",
                    "status": "True" if allowed > 0 else "False",
                    "observedGeneration": budget["metadata"].get("generation", 1),
                    "lastTransitionTime": timestamp(),
                    "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
                    "message": "",
                }
            ],
        }

    # --- views for tests ---------------------------------------------------------------

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        resource = RESOURCES[plural]
        return [
            self._out(resource, obj)
            for (ns, _), obj in sorted(self._store(resource).items())
            if namespace is None or ns == namespace
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "resourceVersion": str(self._revision),
            "oldestWatchableResourceVersion": str(self._oldest_watchable),
            "watchers": len(self._watchers),
            "watchesServed": self.watches_served,
            "pods": [
                {
                    "namespace": p["metadata"]["namespace"],
                    "name": p["metadata"]["name"],
                    "uid": p["metadata"]["uid"],
                    "phase": p["status"]["phase"],
                    "terminating": _is_terminating(p),
                    "labels": p["metadata"].get("labels") or {},
                }
                for p in self.objects("pods")
            ],
            "poddisruptionbudgets": [
                {
                    "namespace": b["metadata"]["namespace"],
                    "name": b["metadata"]["name"],
                    "status": b["status"],
                }
                for b in self.objects("poddisruptionbudgets")
            ],
            "priorityclasses": {
                pc["metadata"]["name"]: pc["value"] for pc in self.objects("priorityclasses")
            },
        }


def _budget_value(value: Any) -> tuple[int, bool] | None:
    """``3`` → (3, False); ``"50%"`` → (50, True); anything else → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value, False
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%") and text[:-1].isdigit():
            return int(text[:-1]), True
        if text.isdigit():
            return int(text), False
    return None


def _scaled(value: tuple[int, bool] | None, total: int) -> int:
    if value is None:
        return 0
    number, percent = value
    return math.ceil(number * total / 100) if percent else number


def _condition(
    kind: str, state: str, now: str, reason: str | None = None, message: str | None = None
) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": kind,
        "status": state,
        "lastProbeTime": None,
        "lastTransitionTime": now,
    }
    if reason:
        condition["reason"] = reason
    if message is not None:
        condition["message"] = message
    return condition


def _container_status(
    container: dict[str, Any], state: dict[str, Any], *, ready: bool
) -> dict[str, Any]:
    image = container.get("image", "")
    return {
        "name": container["name"],
        "image": image,
        "imageID": f"docker.io/library/{image}@sha256:{'0' * 64}",
        "containerID": f"containerd://{uuid.uuid5(uuid.NAMESPACE_OID, container['name']).hex}",
        "ready": ready,
        "started": "running" in state,
        "restartCount": 0,
        "state": state,
    }
