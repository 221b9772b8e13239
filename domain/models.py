"""Entities and requests of quotaflow (DESIGN §2), as validated pydantic models.

Requests reject bad input before anything reaches the database: :func:`parse` turns a pydantic
``ValidationError`` into an :class:`~domain.errors.InvalidInput` that names the field and the
problem. Entities mirror rows and are what the store returns.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from domain.errors import InvalidInput
from domain.hashing import canonical_json
from domain.weekwindow import WeekWindow

# --- shared field types ------------------------------------------------------------------

Username = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9]([a-z0-9._-]{0,62})$")
]
GroupName = Username
DnsLabel = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$"),
]
ProjectName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$"),
]
Actor = Annotated[str, StringConstraints(min_length=1, max_length=200)]
FreeText = Annotated[str, StringConstraints(max_length=2000)]
Gpus = Annotated[int, Field(ge=0, le=4096)]
Cpus = Annotated[int, Field(ge=0, le=65536)]

MAX_CONFIG_BYTES = 256 * 1024


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=10_000)


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any) -> M:
    """Validate ``data`` as ``model``; bad input becomes :class:`InvalidInput` naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def invalid_input(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    message = str(first["msg"]).removeprefix("Value error, ")
    if len(exc.errors()) > 1:
        message += f" (and {len(exc.errors()) - 1} more problem(s))"
    return InvalidInput(message, field=field)


# --- enums -----------------------------------------------------------------------------


class OwnerKind(StrEnum):
    USER = "user"
    GROUP = "group"


class Role(StrEnum):
    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class ResourceType(StrEnum):
    GPU = "GPU"
    CPU = "CPU"


class PreemptionPolicy(StrEnum):
    PREEMPT_LOWER_PRIORITY = "PreemptLowerPriority"
    NEVER = "Never"


class JobStatus(StrEnum):
    PENDING = "PENDING"
    ADMITTED = "ADMITTED"
    RUNNING = "RUNNING"
    PREEMPTING = "PREEMPTING"
    PREEMPTED = "PREEMPTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def active(self) -> bool:
        """Holds capacity and quota."""
        return self in (JobStatus.ADMITTED, JobStatus.RUNNING, JobStatus.PREEMPTING)


# The state machine of DESIGN §3 (the database holds the same table: job_transitions).
TRANSITIONS: frozenset[tuple[JobStatus, JobStatus]] = frozenset(
    (JobStatus(a), JobStatus(b))
    for a, b in [
        ("PENDING", "ADMITTED"), ("PENDING", "CANCELLED"),
        ("ADMITTED", "RUNNING"), ("ADMITTED", "PREEMPTING"), ("ADMITTED", "CANCELLED"),
        ("ADMITTED", "FAILED"),
        ("RUNNING", "SUCCEEDED"), ("RUNNING", "FAILED"), ("RUNNING", "PREEMPTING"),
        ("RUNNING", "CANCELLED"),
        ("PREEMPTING", "PREEMPTED"), ("PREEMPTING", "RUNNING"), ("PREEMPTING", "ADMITTED"),
        ("PREEMPTING", "SUCCEEDED"), ("PREEMPTING", "FAILED"), ("PREEMPTING", "CANCELLED"),
        ("PREEMPTED", "PENDING"), ("PREEMPTED", "CANCELLED"),
    ]
)  # fmt: skip


# --- storages: only scheduling hints may reach a pod ---------------------------------------


class Toleration(Model):
    key: Annotated[str, StringConstraints(max_length=253)] | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: Annotated[str, StringConstraints(max_length=63)] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = Field(default=None, ge=0)


class Affinity(Model):
    # The insides follow the Kubernetes schema and carry no privilege; kept as plain JSON.
    nodeAffinity: dict[str, Any] | None = None
    podAffinity: dict[str, Any] | None = None
    podAntiAffinity: dict[str, Any] | None = None


_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class AffinityConfig(Model):
    """What a storage may add to a pod spec: nodeSelector, affinity, tolerations — nothing else.

    Anything else (hostPath, privileged, hostNetwork, securityContext…) would break the Pod
    Security "restricted" profile, so it is rejected by name here and by the database's CHECK.
    """

    nodeSelector: dict[str, str] = Field(default_factory=dict)
    affinity: Affinity | None = None
    tolerations: list[Toleration] = Field(default_factory=list, max_length=50)

    @field_validator("nodeSelector")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if len(key) > 316 or not _LABEL_KEY.match(key):
                raise ValueError(f"{key!r} is not a valid label key")
            if len(item) > 63 or not _LABEL_VALUE.match(item):
                raise ValueError(f"{item!r} is not a valid label value for {key!r}")
        return value

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude_defaults=True)


# --- entities ----------------------------------------------------------------------------


class User(Model):
    id: UUID
    username: str
    display_name: str | None = None
    platform_admin: bool = False


class Group(Model):
    id: UUID
    name: str


class Owner(Model):
    id: UUID
    kind: OwnerKind
    name: str


class Project(Model):
    p_id: UUID
    parent_id: UUID | None
    owner_id: UUID
    name: str
    path: str
    created_at: datetime


class Storage(Model):
    id: UUID
    owner_id: UUID
    name: str
    affinity_config: dict[str, Any]


class PriorityClass(Model):
    name: str
    value: int
    preemption_policy: PreemptionPolicy
    global_default: bool
    min_runtime_seconds: int = 0
    description: str | None = None


class Pool(Model):
    name: str
    gpu_capacity: int
    cpu_capacity: int
    gpu_in_use: int = 0
    cpu_in_use: int = 0


class Plan(Model):
    """A weekly plan as the user wrote it (both halves of a wrapped window as one)."""

    plan_group: UUID
    project_id: UUID
    resource_owner_id: UUID
    resource_type: ResourceType
    quantity: int
    window: str
    segments: list[tuple[int, int]]


class ConfigCommit(Model):
    id: UUID
    project_id: UUID
    blob_hash: str
    parent_id: UUID | None
    created_at: datetime
    author_id: UUID
    message: str
    version_tag: str | None = None


class Job(Model):
    id: UUID
    name: str
    project_id: UUID
    pool: str
    submitted_by: UUID
    priority_class: str
    priority_value: int
    preemption_policy: PreemptionPolicy
    min_runtime_seconds: int = 0
    required_gpu: int
    required_cpu: int
    image: str | None = None
    command: list[str] | None = None
    run_seconds: float | None = None
    storage_id: UUID | None = None
    config_commit_id: UUID | None = None
    status: JobStatus
    status_reason: str | None = None
    status_actor: str | None = None
    created_at: datetime
    admitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempt: int = 0
    pod_name: str | None = None
    preempted_by: UUID | None = None
    preempted_from: JobStatus | None = None
    best_effort: bool = False
    not_before: datetime | None = None


class JobEvent(Model):
    id: UUID
    job_id: UUID
    from_status: JobStatus | None
    to_status: JobStatus
    at: datetime
    reason: str | None
    actor: str | None
    attempt: int
    pool: str
    gpu: int
    cpu: int


# --- requests ----------------------------------------------------------------------------


class CreateUser(Model):
    username: Username
    display_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    platform_admin: bool = False


class CreateGroup(Model):
    name: GroupName


class CreateProject(Model):
    name: ProjectName
    owner_id: UUID
    parent_id: UUID | None = None


class GrantRole(Model):
    principal_id: UUID
    project_id: UUID
    role: Role


class CreateStorage(Model):
    owner_id: UUID
    name: DnsLabel
    affinity_config: AffinityConfig = Field(default_factory=AffinityConfig)


class CreatePriorityClass(Model):
    name: DnsLabel
    value: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    preemption_policy: PreemptionPolicy = PreemptionPolicy.PREEMPT_LOWER_PRIORITY
    global_default: bool = False
    min_runtime_seconds: int = Field(default=0, ge=0, le=604_800)
    description: Annotated[str, StringConstraints(max_length=500)] | None = None


class SetPool(Model):
    name: DnsLabel
    gpu_capacity: int = Field(ge=0, le=1_000_000)
    cpu_capacity: int = Field(ge=0, le=10_000_000)


class AddPlan(Model):
    project_id: UUID
    resource_owner_id: UUID
    resource_type: ResourceType
    quantity: int = Field(gt=0, le=10_000_000)
    window: Annotated[str, StringConstraints(min_length=1, max_length=100)]

    @field_validator("window")
    @classmethod
    def _readable(cls, value: str) -> str:
        try:
            WeekWindow.parse(value)
        except InvalidInput as exc:
            raise ValueError(exc.reason) from None
        return value

    @property
    def week_window(self) -> WeekWindow:
        return WeekWindow.parse(self.window)


class CommitConfig(Model):
    project_id: UUID
    author_id: UUID
    content: dict[str, Any]
    message: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    # The head the author saw; None = the project has no configuration yet.
    parent_id: UUID | None = None

    @field_validator("content")
    @classmethod
    def _canonical(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(canonical_json(value).encode())
        if size > MAX_CONFIG_BYTES:
            raise ValueError(f"{size} bytes is over the {MAX_CONFIG_BYTES}-byte limit")
        ProjectConfig.model_validate(value)
        return value


class ProjectConfig(BaseModel):
    """The schema of a project's configuration (what a config commit may hold)."""

    model_config = ConfigDict(extra="forbid")

    class Defaults(BaseModel):
        model_config = ConfigDict(extra="forbid")
        pool: DnsLabel | None = None
        priority_class: DnsLabel | None = None
        image: Annotated[str, StringConstraints(max_length=500)] | None = None

    class Limits(BaseModel):
        model_config = ConfigDict(extra="forbid")
        max_gpu_per_job: int | None = Field(default=None, ge=0, le=4096)
        max_cpu_per_job: int | None = Field(default=None, ge=0, le=65536)
        allowed_pools: list[DnsLabel] | None = None
        allowed_priority_classes: list[DnsLabel] | None = None

    defaults: Defaults = Field(default_factory=Defaults)
    limits: Limits = Field(default_factory=Limits)
    # Free-form key/values passed to pods as annotations (quotaflow.io/config.<key>).
    annotations: dict[
        Annotated[str, StringConstraints(max_length=63)],
        Annotated[str, StringConstraints(max_length=1000)],
    ] = Field(default_factory=dict, max_length=64)


class SubmitJob(Model):
    id: UUID | None = None
    name: Annotated[str, StringConstraints(max_length=200)] = ""
    project_id: UUID
    submitted_by: UUID
    pool: DnsLabel | None = None
    priority_class: DnsLabel | None = None
    gpu: Gpus = 0
    cpu: Cpus = 0
    image: Annotated[str, StringConstraints(max_length=500)] | None = None
    command: list[Annotated[str, StringConstraints(max_length=4096)]] | None = Field(
        default=None, max_length=100
    )
    run_seconds: float | None = Field(default=None, ge=0, le=31_536_000)
    storage_id: UUID | None = None

    @model_validator(mode="after")
    def _asks_for_something(self) -> SubmitJob:
        if self.gpu == 0 and self.cpu == 0:
            raise ValueError("a job must ask for at least one GPU or one CPU")
        if self.id is not None and self.id.version != 4:
            raise ValueError("job ids are UUID version 4")
        return self
