"""``job`` commands: through the job workflows (submit, cancel, describe, list) and the database
(why, events)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import typer

from cli.app import JsonOpt, app, console, emit, session, validated
from domain.errors import NotFound
from domain.models import JobStatus, Role
from domain.weekwindow import second_of_week
from settings import get_settings
from workflows import client as wf
from workflows.shared import CancelRequest, JobRequest

job_app = typer.Typer(help="Jobs (through their workflows).", no_args_is_help=True)
app.add_typer(job_app, name="job")

JOB_COLUMNS = [
    "job_id",
    "status",
    "project_path",
    "pool",
    "priority_class",
    "gpu",
    "cpu",
    "attempt",
    "status_reason",
]


@job_app.command("submit")
def job_submit(
    project: str,
    gpu: Annotated[int, typer.Option("--gpu")] = 0,
    cpu: Annotated[int, typer.Option("--cpu")] = 0,
    pool: Annotated[str | None, typer.Option()] = None,
    priority_class: Annotated[str | None, typer.Option("--priority-class", "-p")] = None,
    name: Annotated[str, typer.Option()] = "",
    image: Annotated[str | None, typer.Option()] = None,
    command: Annotated[list[str] | None, typer.Option("--command", help="repeat per word")] = None,
    run_seconds: Annotated[float | None, typer.Option("--run-seconds")] = None,
    job_id: Annotated[UUID | None, typer.Option("--id", help="an idempotency key")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the job to end")] = False,
    json_: JsonOpt = False,
) -> None:
    """Submit a job (update-with-start of its JobWorkflow); the same --id twice is one job."""
    actor = session.actor()
    target = session.store.projects.resolve(project)
    with validated():
        request = JobRequest(
            job_id=job_id or uuid.uuid4(),
            project_id=target.p_id,
            actor=actor.username,
            gpu=gpu,
            cpu=cpu,
            pool=pool,
            priority_class=priority_class,
            name=name,
            image=image,
            command=command,
            run_seconds=run_seconds,
        )
    settings = get_settings()

    async def submit(client: Any) -> Any:
        view = await wf.submit_job(client, settings, request)
        return await wf.job_result(client, settings, view.job_id) if wait else view

    emit(session.temporal(submit), JOB_COLUMNS, json_=json_)


@job_app.command("cancel")
def job_cancel(
    job_id: UUID,
    reason: Annotated[str, typer.Option()] = "cancelled by its owner",
    json_: JsonOpt = False,
) -> None:
    """Cancel a job (a member of its project); its pod is deleted."""
    actor = session.actor()
    settings = get_settings()
    request = CancelRequest(actor=actor.username, reason=reason)
    view = session.temporal(lambda client: wf.cancel_job(client, settings, job_id, request))
    emit(view, JOB_COLUMNS, json_=json_)


@job_app.command("describe")
def job_describe(job_id: UUID, json_: JsonOpt = False) -> None:
    """The job as its workflow sees it (the ``describe`` query)."""
    job = session.store.queue.get(job_id)
    session.require(job.project_id, Role.VIEWER, "reading a job")
    settings = get_settings()
    try:
        view = session.temporal(lambda client: wf.describe_job(client, settings, job_id))
    except NotFound:
        from activities.jobs import job_view

        view = job_view(session.store.queue.view(job_id))  # its workflow has ended
    emit(view, JOB_COLUMNS, json_=json_)


@job_app.command("list")
def job_list(
    status: Annotated[JobStatus | None, typer.Option()] = None,
    project: Annotated[str | None, typer.Option(help="names prefix, e.g. org/team")] = None,
    pool: Annotated[str | None, typer.Option()] = None,
    query: Annotated[str | None, typer.Option(help="extra visibility query clause")] = None,
    limit: int = 50,
    json_: JsonOpt = False,
) -> None:
    """Jobs from Temporal visibility (search attributes), limited to what the actor may see."""
    actor = session.actor()
    settings = get_settings()
    visibility = wf.visibility_query(
        status=status.value if status else None,
        project_prefix=project,
        pool=pool,
        extra=query,
        prefix=settings.workflow_id_prefix,
    )
    rows = session.temporal(lambda client: wf.list_jobs(client, visibility, limit))
    if not actor.platform_admin:
        rows = [r for r in rows if _visible(actor.id, r.get("project"))]
    emit(
        rows,
        [
            "workflow_id",
            "status",
            "project",
            "pool",
            "priority",
            "gpus",
            "workflow_status",
            "started",
        ],
        title=f"jobs: {visibility}",
        json_=json_,
    )


def _visible(user_id: UUID, names: str | None) -> bool:
    if not names:
        return False
    try:
        project = session.store.projects.resolve(names)
    except NotFound:
        return False
    return session.store.tenants.effective_role(user_id, project.p_id) is not None


@job_app.command("events")
def job_events(job_id: UUID, json_: JsonOpt = False) -> None:
    """Every transition of the job, from the database's append-only history."""
    job = session.store.queue.get(job_id)
    session.require(job.project_id, Role.VIEWER, "reading a job")
    emit(
        session.store.queue.events(job_id),
        ["at", "from_status", "to_status", "attempt", "actor", "reason"],
        title=f"events of {job_id}",
        json_=json_,
    )


@job_app.command("why")
def job_why(job_id: UUID, json_: JsonOpt = False) -> None:
    """Why the job is where it is: its queue place, the quotas and plans in force, the config
    commit it was submitted under, and the preemptions that touched it (with their rankings)."""
    store = session.store
    job = store.queue.get(job_id)
    session.require(job.project_id, Role.VIEWER, "reading a job")
    now = datetime.now(UTC)
    report: dict[str, Any] = {
        "job_id": job.id,
        "status": job.status.value,
        "reason": job.status_reason,
        "attempt": job.attempt,
        "project": store.projects.display_path(job.project_id),
        "priority": f"{job.priority_class} ({job.priority_value})",
        "asks": {"gpu": job.required_gpu, "cpu": job.required_cpu},
        "pool": store.catalog.pool(job.pool),
        "second_of_week": second_of_week(now, get_settings().zone),
        "quota_now": [
            {k: r[k] for k in ("name", "resource_type", "quantity", "in_use", "window")}
            for r in store.plans.quota_at(job.project_id, now)
        ],
        "config_commit": None,
        "preemption_started": [],
        "preempted_by": None,
    }
    if job.config_commit_id:
        commit, _ = store.configs.show(job.config_commit_id)
        report["config_commit"] = {
            "id": commit.id,
            "message": commit.message,
            "tag": commit.version_tag,
            "project": commit.project_id,
        }
    if job.status == JobStatus.PENDING:
        report["ahead_in_queue"] = store.queue.queue_position(job.id)
        if job.not_before and job.not_before > now:
            report["backoff_until"] = job.not_before
        report["if_it_preempted_now"] = _explain(job.id)
    for saga in store.preemption.for_job(job.id):
        report["preemption_started"].append(_saga(saga))
    victim_of = store.preemption.of_victim(job.id)
    if victim_of is not None:
        mine = next((c for c in victim_of["ranking"] if c["id"] == str(job.id)), None)
        report["preempted_by"] = {**_saga(victim_of), "this_job_in_ranking": mine}
    if json_ or session.json:
        emit(report, json_=True)
        return
    _print_why(report)


def _explain(job_id: UUID) -> dict[str, Any]:
    result = session.store.preemption.explain(job_id)
    return {
        "outcome": result.outcome,
        "reason": result.reason,
        "ranking": [c.to_json() for c in result.plan.candidates] if result.plan else [],
    }


def _saga(saga: dict[str, Any]) -> dict[str, Any]:
    return {
        k: saga[k]
        for k in (
            "id",
            "preemptor_id",
            "status",
            "reason",
            "need_gpu",
            "need_cpu",
            "victims",
            "created_at",
            "finished_at",
        )
    }


def _print_why(report: dict[str, Any]) -> None:
    pool = report["pool"]
    console.print(
        f"[bold]{report['job_id']}[/] is {report['status']} "
        f"(attempt {report['attempt']}): {report['reason']}"
    )
    console.print(
        f"project {report['project']}, {report['priority']}, asks "
        f"{report['asks']['gpu']} GPU / {report['asks']['cpu']} CPU in pool "
        f"{pool.name} ({pool.gpu_in_use}/{pool.gpu_capacity} GPU, "
        f"{pool.cpu_in_use}/{pool.cpu_capacity} CPU in use)"
    )
    if "ahead_in_queue" in report:
        console.print(f"{report['ahead_in_queue']} pending job(s) of the pool are ahead of it")
    if "backoff_until" in report:
        console.print(f"backing off after repeated preemption until {report['backoff_until']}")
    if report["quota_now"]:
        emit(
            report["quota_now"],
            ["name", "resource_type", "quantity", "in_use", "window"],
            title=f"plans in force now (second {report['second_of_week']} of the week)",
        )
    else:
        console.print("no plan covers its project now: it runs as best effort (idle capacity)")
    if report["config_commit"]:
        c = report["config_commit"]
        console.print(
            f"submitted under config commit {c['id']} ({c['message']!r}"
            + (f", tag {c['tag']}" if c["tag"] else "")
            + ")"
        )
    explained = report.get("if_it_preempted_now")
    if explained:
        console.print(f"preemption now: {explained['outcome']} — {explained['reason']}")
        if explained["ranking"]:
            emit(
                explained["ranking"],
                [
                    "rank",
                    "id",
                    "priority_class",
                    "best_effort",
                    "gpu",
                    "cpu",
                    "cum_gpu",
                    "decision",
                ],
                title="victim ranking",
            )
    for saga in report["preemption_started"]:
        console.print(
            f"preemption {saga['id']} it started: {saga['status']} "
            f"({saga['reason'] or 'under way'})"
        )
    if report["preempted_by"]:
        by = report["preempted_by"]
        ranked = by["this_job_in_ranking"] or {}
        console.print(
            f"preempted by {by['preemptor_id']} (saga {by['status']}): ranked "
            f"{ranked.get('rank')} of {len(by['victims'])} victim(s) taken, "
            f"decision {ranked.get('decision')}"
        )
