"""What goes into and comes out of :mod:`k8s.client`: one pydantic model per call.

These models are also activity inputs and outputs, so fields may be added (with defaults) but
never renamed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

# A label value: at most 63 characters, alphanumerics with '-', '_' or '.' inside.
LABEL_VALUE = r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
# A quotaflow priority class becomes part of a PriorityClass name (a DNS-1123 subdomain).
PRIORITY_CLASS_NAME = r"^[a-z0-9](?:[-a-z0-9]{0,60}[a-z0-9])?$"

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
EndingOutcome = Literal["Succeeded", "Failed", "Deleted"]


class PodRequest(BaseModel):
    """Everything needed to launch the pod of one attempt of an admitted job."""

    model_config = ConfigDict(frozen=True)

    job_id: UUID
    attempt: int = Field(ge=0)
    project_id: UUID
    project_path: str
    pool: str = Field(pattern=LABEL_VALUE, min_length=1)
    priority_class: str = Field(pattern=PRIORITY_CLASS_NAME)
    gpu: int = Field(ge=0)
    cpu: int = Field(ge=0, description="Whole cores.")
    submitted_by: str
    image: str | None = None
    command: list[str] | None = None
    run_seconds: float | None = Field(
        default=None,
        ge=0,
        description="How long the workload runs. The emulator honours it; on a real cluster "
        "only the default workload (no image given) does, by sleeping that long.",
    )
    run_outcome: Literal["Succeeded", "Failed"] = Field(
        default="Succeeded",
        description="How the workload ends after run_seconds, same rules as run_seconds.",
    )
    node_selector: dict[str, str] | None = Field(
        default=None, description="From the storage's affinity_config (already validated)."
    )
    affinity: dict[str, Any] | None = Field(
        default=None, description="A Kubernetes Affinity object, camelCase keys."
    )
    tolerations: list[dict[str, Any]] | None = Field(
        default=None, description="Kubernetes Toleration objects, camelCase keys."
    )


class PodInfo(BaseModel):
    """The state of one quotaflow pod as the API server reported it."""

    name: str
    namespace: str
    uid: str
    phase: PodPhase
    resource_version: str
    job_id: UUID | None = None
    attempt: int | None = None
    pool: str | None = None
    priority_class_name: str | None = None
    node_name: str | None = None
    created_at: datetime | None = None
    deletion_pending: bool = Field(
        default=False, description="Terminating: deletionTimestamp is set, the pod is not gone."
    )
    deletion_timestamp: datetime | None = None
    disruption_reason: str | None = Field(
        default=None,
        description="Reason of the DisruptionTarget condition, e.g. EvictionByEvictionAPI.",
    )
    exit_code: int | None = None
    message: str = ""


class PodEnding(BaseModel):
    """One pod reached its end: a terminal phase, or deletion before one."""

    pod_name: str
    uid: str
    job_id: UUID | None
    attempt: int | None
    outcome: EndingOutcome
    message: str = ""
    exit_code: int | None = None
    disruption_reason: str | None = None
    resource_version: str


class PodEndingBatch(BaseModel):
    """The endings seen in one watch window and the checkpoint to resume from.

    Checkpoint ``resource_version`` only after every ending of the batch has been handled.
    """

    endings: list[PodEnding]
    resource_version: str | None
    relisted: bool = Field(
        default=False,
        description="The window had to list pods again (a start without a checkpoint, or a "
        "410 Gone): endings of pods that ended earlier may be reported again.",
    )


class EvictionResult(BaseModel):
    pod_name: str
    outcome: Literal["evicted", "already_gone"]
    attempts: int = Field(default=1, ge=1, description="Requests made, retries included.")


class BackoffPolicy(BaseModel):
    """Exponential backoff between retries of a blocked or failed eviction."""

    model_config = ConfigDict(frozen=True)

    initial_seconds: float = Field(default=0.5, gt=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_seconds: float = Field(default=10.0, gt=0)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        return float(min(self.max_seconds, self.initial_seconds * self.multiplier ** (retry - 1)))
