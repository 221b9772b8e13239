"""What workflows, activities and other services exchange: ids, search attributes, models.

One model in, one model out for every workflow, activity, signal and update; fields may be added
with defaults, never renamed or removed, so recorded histories keep replaying. Other services
(a web front end, CI, billing) use exactly these names — docs/en/workflows.md is generated from
this module and a test fails when it is stale.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.common import SearchAttributeKey

DEFAULT_TASK_QUEUE = "quotaflow"

# --- workflow ids ------------------------------------------------------------------------


def job_workflow_id(job_id: UUID, prefix: str = "") -> str:
    return f"{prefix}job-{job_id}"


def dispatcher_workflow_id(pool: str, prefix: str = "") -> str:
    return f"{prefix}dispatcher-{pool}"


def preemption_workflow_id(job_id: UUID, prefix: str = "") -> str:
    return f"{prefix}preempt-{job_id}"


def config_workflow_id(project_id: UUID, request_id: UUID, prefix: str = "") -> str:
    return f"{prefix}config-{project_id}-{request_id}"


def pod_watcher_workflow_id(prefix: str = "") -> str:
    return f"{prefix}pod-watcher"


# --- search attributes -------------------------------------------------------------------

QF_STATUS = SearchAttributeKey.for_keyword("QfStatus")
QF_PROJECT = SearchAttributeKey.for_keyword("QfProject")
QF_PRIORITY = SearchAttributeKey.for_int("QfPriority")
QF_PRIORITY_CLASS = SearchAttributeKey.for_keyword("QfPriorityClass")
QF_GPUS = SearchAttributeKey.for_int("QfGpus")
QF_POOL = SearchAttributeKey.for_keyword("QfPool")

# name → Temporal type, for `temporal server start-dev --search-attribute` and
# `temporal operator search-attribute create`.
SEARCH_ATTRIBUTES: dict[str, str] = {
    "QfStatus": "Keyword",
    "QfProject": "Keyword",
    "QfPriority": "Int",
    "QfPriorityClass": "Keyword",
    "QfGpus": "Int",
    "QfPool": "Keyword",
}


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)


class Request(Message):
    """What other services send: an unknown field is a mistake (a typo), so it is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


JobStatusName = Literal[
    "PENDING", "ADMITTED", "RUNNING", "PREEMPTING", "PREEMPTED", "SUCCEEDED", "FAILED",
    "CANCELLED",
]  # fmt: skip
FINAL_STATUSES = ("SUCCEEDED", "FAILED", "CANCELLED")


# --- JobWorkflow -------------------------------------------------------------------------


class JobRequest(Request):
    """A job submission, as another service sends it."""

    job_id: UUID
    project_id: UUID
    actor: str = Field(min_length=1, max_length=200, description="The submitting username.")
    gpu: int = Field(default=0, ge=0, le=4096)
    cpu: int = Field(default=0, ge=0, le=65536)
    pool: str | None = None
    priority_class: str | None = None
    name: str = Field(default="", max_length=200)
    image: str | None = Field(default=None, max_length=500)
    command: list[str] | None = Field(default=None, max_length=100)
    run_seconds: float | None = Field(default=None, ge=0, le=31_536_000)

    @model_validator(mode="after")
    def _asks_for_something(self) -> JobRequest:
        if self.gpu == 0 and self.cpu == 0:
            raise ValueError("a job must ask for at least one GPU or one CPU")
        return self


# The JobWorkflow revision new workflows are started with (``JobInput.revision``). Carried in the
# input, so a history replays with the behaviour it was written with — without a
# ``workflow.patched`` marker, whose automatic TemporalChangeVersion upsert would cost every job
# one more visibility write.
JOB_REVISION = 2


class JobInput(Message):
    """The input of ``JobWorkflow.run``: a new request, or an existing job to adopt."""

    job_id: UUID
    request: JobRequest | None = None
    # Carried over continue-as-new: pod endings already handled.
    handled_endings: list[str] = Field(default_factory=list)
    poll_seconds: float = Field(
        default=120.0, gt=0, description="How often to re-read the job when nothing arrives."
    )
    attempts_per_run: int = Field(
        default=10, ge=1, description="Continue as new after this many attempts (preemptions)."
    )
    revision: int = Field(
        default=1,
        ge=1,
        le=2,
        description=(
            "How the workflow behaves: 2 (what quotaflow's clients send) trusts the `admitted`"
            " signal without a read and keeps one polling timer running instead of one per wait;"
            " 1 is the behaviour of histories written before revisions existed."
        ),
    )


class JobView(Message):
    """A job as the database holds it (the answer of ``describe``, ``submit`` and ``cancel``)."""

    job_id: UUID
    name: str = ""
    status: JobStatusName
    status_reason: str | None = None
    attempt: int = 0
    pod_name: str | None = None
    project_id: UUID
    project_path: str = Field(description="names from the root: org/team/project")
    pool: str
    priority_class: str
    priority_value: int
    gpu: int
    cpu: int
    submitted_by: str
    best_effort: bool = False
    preempted_by: UUID | None = None
    created_at: datetime
    admitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


class AdmittedSignal(Message):
    """Sent by the dispatcher (or a preemption saga) when the job was admitted."""

    attempt: int


class PodEndedSignal(Message):
    """Sent by the pod watcher when the job's pod ended or disappeared."""

    pod_name: str
    uid: str
    attempt: int | None
    outcome: Literal["Succeeded", "Failed", "Deleted"]
    message: str = ""
    exit_code: int | None = None
    disruption_reason: str | None = None


class SagaNotice(Message):
    """Sent by a preemption saga to the jobs it touches."""

    kind: Literal["preempting", "requeued", "restored"]
    preemptor_id: UUID


class CancelRequest(Request):
    actor: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="cancelled", max_length=2000)


# --- DispatcherWorkflow -------------------------------------------------------------------


class DispatcherInput(Message):
    pool: str
    workflow_id_prefix: str = Field(default="", description="for the ids of the sagas it starts")
    batch_size: int = Field(default=50, ge=1, le=10_000)
    idle_seconds: float = Field(default=5.0, gt=0)
    reconcile_after_seconds: float = Field(default=10.0, gt=0)
    preemption_retry_seconds: float = Field(default=10.0, ge=0)
    eviction_deadline_seconds: float = Field(default=120.0, gt=0)
    eviction_grace_seconds: int | None = None
    turns_per_run: int = Field(default=250, ge=1, description="Continue as new after this many.")
    # Carried over continue-as-new: when a preemption was last tried for a job (epoch seconds).
    preemption_tries: dict[str, float] = Field(default_factory=dict)


class WakeSignal(Message):
    reason: str = ""


class DispatcherView(Message):
    pool: str
    iterations: int
    admitted_total: int
    last_blocked: UUID | None
    preemptions_started: int


# --- PreemptionWorkflow -------------------------------------------------------------------


class PreemptionInput(Message):
    job_id: UUID
    actor: str = "dispatcher"
    deadline_seconds: float = Field(
        default=120.0, gt=0, description="Evictions not done by then are compensated."
    )
    grace_seconds: int | None = Field(default=None, ge=0, description="Eviction grace period.")


class PreemptionResult(Message):
    job_id: UUID
    outcome: Literal["completed", "compensated", "not_started"]
    reason: str
    victims: list[UUID] = Field(default_factory=list)
    evicted: list[UUID] = Field(default_factory=list)


# --- ConfigCommitWorkflow -----------------------------------------------------------------


class ConfigRequest(Request):
    op: Literal["commit", "tag", "revert"]
    request_id: UUID
    project_id: UUID
    actor: str = Field(min_length=1, max_length=200)
    content: dict[str, object] | None = None
    parent_id: UUID | None = None
    message: str | None = Field(default=None, max_length=2000)
    ref: str | None = Field(default=None, description="commit id, tag, HEAD or HEAD~N")
    tag: str | None = None


class ConfigResult(Message):
    commit_id: UUID
    project_id: UUID
    blob_hash: str
    parent_id: UUID | None
    message: str
    version_tag: str | None
    author: str


# --- activities --------------------------------------------------------------------------


class JobRef(Message):
    job_id: UUID


class FinishInput(Message):
    job_id: UUID
    attempt: int
    ending: PodEndedSignal
    launch_failed: bool = False


class CancelInput(Message):
    job_id: UUID
    request: CancelRequest


class ClaimInput(Message):
    pool: str
    limit: int
    actor: str = "dispatcher"


class ClaimOutput(Message):
    admitted: list[UUID]
    blocked: UUID | None


class NotifyAdmitted(Message):
    job_ids: list[UUID]


class ReconcileInput(Message):
    pool: str
    older_than_seconds: float


class PreemptionCheck(Message):
    job_id: UUID
    worth_trying: bool
    reason: str


class Victim(Message):
    job_id: UUID
    pod_name: str | None
    taken_from: str


class ReserveOutput(Message):
    outcome: str
    reason: str
    victims: list[Victim] = Field(default_factory=list)


class EvictInput(Message):
    job_id: UUID
    pod_name: str
    grace_seconds: int | None = None


class VictimGoneInput(Message):
    victim_id: UUID
    preemptor_id: UUID
    actor: str


class CompensateInput(Message):
    preemptor_id: UUID
    reason: str
    evicted: list[UUID]
    actor: str


class CompensateOutput(Message):
    restored: list[UUID]
    requeued: list[UUID]


class SagaNotify(Message):
    job_ids: list[UUID]
    notice: SagaNotice


class PodWatchInput(Message):
    checkpoint: str | None = None


class WakeInput(Message):
    pools: list[str]
    reason: str
