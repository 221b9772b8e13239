"""``job`` commands."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.app import JsonOpt, app, emit, session, validated
from domain.models import JobStatus, SubmitJob

job_app = typer.Typer(help="Jobs.", no_args_is_help=True)
app.add_typer(job_app, name="job")


@job_app.command("submit")
def job_submit(
    project: str,
    gpu: Annotated[int, typer.Option("--gpu")] = 0,
    cpu: Annotated[int, typer.Option("--cpu")] = 0,
    pool: Annotated[str | None, typer.Option()] = None,
    priority_class: Annotated[str | None, typer.Option("--priority-class", "-p")] = None,
    name: Annotated[str, typer.Option()] = "",
    image: Annotated[str | None, typer.Option()] = None,
    run_seconds: Annotated[float | None, typer.Option("--run-seconds")] = None,
    json_: JsonOpt = False,
) -> None:
    """Queue a job in a project."""
    store = session.store
    actor = session.actor()
    target = store.projects.resolve(project)
    with validated():
        request = SubmitJob(
            project_id=target.p_id,
            submitted_by=actor.id,
            pool=pool,
            priority_class=priority_class,
            gpu=gpu,
            cpu=cpu,
            name=name,
            image=image,
            run_seconds=run_seconds,
        )
    job = store.queue.submit(request, actor=actor.username)
    emit(
        job, ["id", "status", "pool", "priority_class", "required_gpu", "required_cpu"], json_=json_
    )


@job_app.command("list")
def job_list(
    project: Annotated[str | None, typer.Option(help="a project and its subtree")] = None,
    status: Annotated[list[JobStatus] | None, typer.Option()] = None,
    pool: Annotated[str | None, typer.Option()] = None,
    limit: int = 50,
    json_: JsonOpt = False,
) -> None:
    store = session.store
    project_id = store.projects.resolve(project).p_id if project else None
    with validated():
        rows = store.queue.search(statuses=status, pool=pool, project_id=project_id, limit=limit)
    emit(
        rows,
        [
            "id",
            "name",
            "status",
            "pool",
            "priority_class",
            "required_gpu",
            "required_cpu",
            "attempt",
            "submitted_by_name",
            "created_at",
        ],
        title="jobs",
        json_=json_,
    )
