"""The pod contract: the name, labels, annotations and spec of a job's pod, and how a pod
object read back from the API becomes a :class:`~k8s.models.PodInfo`.

Pure functions over JSON-shaped dicts (camelCase keys, as on the wire), so the client, the
watcher and the tests share one definition.
"""

from __future__ import annotations

import math
from typing import Any
from uuid import UUID

from k8s.models import PodInfo, PodRequest

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "quotaflow"
LABEL_JOB_ID = "quotaflow.io/job-id"
LABEL_ATTEMPT = "quotaflow.io/attempt"
LABEL_PROJECT_ID = "quotaflow.io/project-id"
LABEL_POOL = "quotaflow.io/pool"
LABEL_PRIORITY_CLASS = "quotaflow.io/priority-class"
ANNOTATION_PROJECT_PATH = "quotaflow.io/project-path"
ANNOTATION_SUBMITTED_BY = "quotaflow.io/submitted-by"
# Read by the emulator only (see k8s.emulator.state); harmless on a real cluster.
ANNOTATION_RUN_SECONDS = "emulator.quotaflow.io/run-seconds"
ANNOTATION_OUTCOME = "emulator.quotaflow.io/outcome"

GPU_RESOURCE = "nvidia.com/gpu"
CONTAINER_NAME = "job"
# The default workload runs as "nobody": busybox would otherwise run as root, which the
# Pod Security "restricted" profile forbids.
NOBODY = 65534
FOREVER_SECONDS = 2_147_483_647

MANAGED_SELECTOR = f"{MANAGED_BY}={MANAGER}"


def pod_name(job_id: UUID, attempt: int) -> str:
    """``qf-<job uuid>-<attempt>``: deterministic, so creating it twice is idempotent.

    At most 3 + 36 + 1 + 10 = 50 characters: a valid DNS-1123 label.
    """
    return f"qf-{job_id}-{attempt}"


def job_selector(job_id: UUID | None = None) -> str:
    """The label selector of every quotaflow pod, or of one job's pods."""
    return MANAGED_SELECTOR if job_id is None else f"{MANAGED_SELECTOR},{LABEL_JOB_ID}={job_id}"


def _default_command(req: PodRequest) -> list[str]:
    if req.run_seconds is None:
        return ["sleep", str(FOREVER_SECONDS)]
    exit_code = 0 if req.run_outcome == "Succeeded" else 1
    return ["sh", "-c", f"sleep {math.ceil(req.run_seconds)}; exit {exit_code}"]


def build_pod_manifest(
    req: PodRequest, *, namespace: str, priority_class_prefix: str, default_image: str
) -> dict[str, Any]:
    """The pod object quotaflow creates for one attempt of a job."""
    name = pod_name(req.job_id, req.attempt)
    quantities: dict[str, str] = {}
    if req.cpu > 0:
        quantities["cpu"] = str(req.cpu)
    if req.gpu > 0:
        quantities[GPU_RESOURCE] = str(req.gpu)
    annotations = {
        ANNOTATION_PROJECT_PATH: req.project_path,
        ANNOTATION_SUBMITTED_BY: req.submitted_by,
    }
    if req.run_seconds is not None:
        annotations[ANNOTATION_RUN_SECONDS] = f"{req.run_seconds:g}"
        annotations[ANNOTATION_OUTCOME] = req.run_outcome
    default_workload = req.image is None
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if default_workload:
        pod_security |= {"runAsUser": NOBODY, "runAsGroup": NOBODY}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": req.image or default_image,
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if req.command is not None:
        container["command"] = list(req.command)
    elif default_workload:
        container["command"] = _default_command(req)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "priorityClassName": f"{priority_class_prefix}{req.priority_class}",
        "securityContext": pod_security,
        "containers": [container],
    }
    if req.node_selector:
        spec["nodeSelector"] = dict(req.node_selector)
    if req.affinity:
        spec["affinity"] = req.affinity
    if req.tolerations:
        spec["tolerations"] = list(req.tolerations)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                MANAGED_BY: MANAGER,
                LABEL_JOB_ID: str(req.job_id),
                LABEL_ATTEMPT: str(req.attempt),
                LABEL_PROJECT_ID: str(req.project_id),
                LABEL_POOL: req.pool,
                LABEL_PRIORITY_CLASS: req.priority_class,
            },
            "annotations": annotations,
        },
        "spec": spec,
    }


def _uuid_or_none(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None


def pod_info(raw: dict[str, Any]) -> PodInfo:
    """Read a pod object (a JSON dict) into a :class:`PodInfo`."""
    meta = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    labels = meta.get("labels") or {}
    disruption = next(
        (
            c.get("reason")
            for c in status.get("conditions") or []
            if c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        ),
        None,
    )
    finished = {
        c.get("name"): (c.get("state") or {}).get("terminated")
        for c in status.get("containerStatuses") or []
    }
    terminated = finished.get(CONTAINER_NAME) or next((t for t in finished.values() if t), None)
    exit_code = terminated.get("exitCode") if terminated else None
    message = status.get("message") or (
        (terminated.get("message") or terminated.get("reason") or "") if terminated else ""
    )
    return PodInfo(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        uid=meta.get("uid", ""),
        phase=status.get("phase") or "Pending",
        resource_version=str(meta.get("resourceVersion", "")),
        job_id=_uuid_or_none(labels.get(LABEL_JOB_ID)),
        attempt=_int_or_none(labels.get(LABEL_ATTEMPT)),
        pool=labels.get(LABEL_POOL),
        priority_class_name=spec.get("priorityClassName"),
        node_name=spec.get("nodeName"),
        created_at=meta.get("creationTimestamp"),
        deletion_pending=bool(meta.get("deletionTimestamp")),
        deletion_timestamp=meta.get("deletionTimestamp"),
        disruption_reason=disruption,
        exit_code=exit_code,
        message=message,
    )
