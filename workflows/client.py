"""The client side of quotaflow's workflows: what starter.py and other services call.

Everything here is plain Temporal client code on the contracts of :mod:`workflows.shared`; a
service in another language does the same with its own SDK (see docs/en/workflows.md).
"""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import (
    AlreadyExists,
    ConfigConflict,
    IllegalTransition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QuotaflowError,
)
from settings import Settings
from workflows.config import ConfigCommitWorkflow
from workflows.job import JobWorkflow
from workflows.shared import (
    JOB_REVISION,
    QF_GPUS,
    QF_POOL,
    QF_PRIORITY,
    QF_PROJECT,
    QF_STATUS,
    CancelRequest,
    ConfigRequest,
    ConfigResult,
    JobInput,
    JobRequest,
    JobView,
    config_workflow_id,
    job_workflow_id,
)

_ERRORS: dict[str, type[QuotaflowError]] = {
    cls.__name__: cls
    for cls in (
        PermissionDenied,
        InvalidInput,
        NotFound,
        ConfigConflict,
        AlreadyExists,
        IllegalTransition,
    )
}


def as_quotaflow_error(err: BaseException) -> QuotaflowError:
    """The project error behind a failed update or workflow (its type travels in the failure)."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__ or getattr(cause, "cause", None)
    if isinstance(cause, ApplicationError):
        return _ERRORS.get(cause.type or "", QuotaflowError)(cause.message)
    return QuotaflowError(str(err))


async def submit_job(client: Client, settings: Settings, request: JobRequest) -> JobView:
    """Start the job's workflow and get the recorded job back (update-with-start).

    Submitting the same ``job_id`` twice returns the same job: the second call lands on the
    running workflow. RBAC and bad input come back as the project's errors, and nothing is
    written.
    """
    start = WithStartWorkflowOperation(
        JobWorkflow.run,
        JobInput(
            job_id=request.job_id,
            request=request,
            poll_seconds=settings.job_poll_seconds,
            revision=JOB_REVISION,
        ),
        id=job_workflow_id(request.job_id, settings.workflow_id_prefix),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(QF_STATUS, "SUBMITTED"),
                SearchAttributePair(QF_GPUS, request.gpu),
            ]
        ),
    )
    try:
        return await client.execute_update_with_start_workflow(
            JobWorkflow.submit, request, start_workflow_operation=start
        )
    except WorkflowUpdateFailedError as err:
        raise as_quotaflow_error(err) from None


async def cancel_job(
    client: Client, settings: Settings, job_id: UUID, request: CancelRequest
) -> JobView:
    handle = client.get_workflow_handle_for(
        JobWorkflow.run,
        job_workflow_id(job_id, settings.workflow_id_prefix),
    )
    try:
        return await handle.execute_update(JobWorkflow.cancel, request)
    except WorkflowUpdateFailedError as err:
        raise as_quotaflow_error(err) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"job {job_id} has no running workflow (already ended?)") from None
        raise


async def describe_job(client: Client, settings: Settings, job_id: UUID) -> JobView:
    handle = client.get_workflow_handle(job_workflow_id(job_id, settings.workflow_id_prefix))
    try:
        return await handle.query(JobWorkflow.describe)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"no workflow for job {job_id}") from None
        raise


async def job_result(client: Client, settings: Settings, job_id: UUID) -> JobView:
    """Wait for the job's end (its workflow's result)."""
    handle = client.get_workflow_handle_for(
        JobWorkflow.run,
        job_workflow_id(job_id, settings.workflow_id_prefix),
    )
    return await handle.result()


def visibility_query(
    *,
    status: str | None = None,
    project_prefix: str | None = None,
    pool: str | None = None,
    extra: str | None = None,
    prefix: str = "",
) -> str:
    """A visibility query over the job workflows, e.g. running jobs of a subtree."""
    parts = ["WorkflowType = 'JobWorkflow'"]
    if prefix:
        parts.append(f"WorkflowId STARTS_WITH '{_quote(prefix)}job-'")
    if status:
        parts.append(f"QfStatus = '{_quote(status)}'")
    if project_prefix:
        parts.append(f"QfProject STARTS_WITH '{_quote(project_prefix)}'")
    if pool:
        parts.append(f"QfPool = '{_quote(pool)}'")
    if extra:
        parts.append(f"({extra})")
    return " AND ".join(parts)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


async def list_jobs(client: Client, query: str, limit: int = 100) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async for execution in client.list_workflows(query, limit=limit):
        attrs = execution.typed_search_attributes
        rows.append(
            {
                "workflow_id": execution.id,
                "status": attrs.get(QF_STATUS),
                "project": attrs.get(QF_PROJECT),
                "pool": attrs.get(QF_POOL),
                "priority": attrs.get(QF_PRIORITY),
                "gpus": attrs.get(QF_GPUS),
                "workflow_status": execution.status.name
                if isinstance(execution.status, WorkflowExecutionStatus)
                else None,
                "started": execution.start_time,
            }
        )
    return rows


async def change_config(client: Client, settings: Settings, request: ConfigRequest) -> ConfigResult:
    """commit / tag / revert through ConfigCommitWorkflow (so it is in Temporal's history)."""
    try:
        return await client.execute_workflow(
            ConfigCommitWorkflow.run,
            request,
            id=config_workflow_id(
                request.project_id, request.request_id, settings.workflow_id_prefix
            ),
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    except Exception as err:  # WorkflowFailureError carries the activity's ApplicationError
        raise as_quotaflow_error(err) from None


def new_request_id() -> UUID:
    return uuid.uuid4()
