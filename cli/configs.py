"""``config`` commands: git-style project configuration."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.app import JsonOpt, app, console, emit, session, validated
from domain.errors import InvalidInput
from domain.hashing import parse_json_object
from domain.models import CommitConfig, Role
from settings import get_settings
from workflows import client as wf
from workflows.shared import ConfigRequest, ConfigResult

config_app = typer.Typer(help="Versioned project configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

RESULT_COLUMNS = ["commit_id", "blob_hash", "parent_id", "version_tag", "message", "author"]
RefArg = Annotated[str, typer.Argument(help="a commit id, a tag, HEAD or HEAD~N")]


def read_content(file: Path | None, content: str | None) -> dict[str, Any]:
    if (file is None) == (content is None):
        raise InvalidInput("give exactly one of --file or --content", field="content")
    if file is not None:
        try:
            content = file.read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read {file}: {exc.strerror}", field="file") from exc
    assert content is not None
    return parse_json_object(content)


@config_app.command("commit")
def config_commit(
    project: str,
    message: Annotated[str, typer.Option("-m", "--message")],
    file: Annotated[Path | None, typer.Option("--file", help="JSON file")] = None,
    content: Annotated[str | None, typer.Option("--content", help="JSON text")] = None,
    parent: Annotated[
        str | None,
        typer.Option(
            help="the head you edited (default: the current head); a stale parent is a conflict"
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Commit new content as the project's head (ConfigCommitWorkflow; admin of the project)."""
    store = session.store
    target = store.projects.resolve(project)
    actor = session.actor()
    body = read_content(file, content)
    parent_id = (
        store.configs.resolve(target.p_id, parent).id
        if parent
        else (head.id if (head := store.configs.head(target.p_id)) else None)
    )
    with validated():
        CommitConfig(
            project_id=target.p_id,
            author_id=actor.id,
            content=body,
            parent_id=parent_id,
            message=message,
        )  # bad input stops here
        request = ConfigRequest(
            op="commit",
            request_id=uuid.uuid4(),
            project_id=target.p_id,
            actor=actor.username,
            content=body,
            parent_id=parent_id,
            message=message,
        )
    emit(_through_workflow(request), RESULT_COLUMNS, json_=json_)


def _through_workflow(request: ConfigRequest) -> ConfigResult:
    settings = get_settings()
    return session.temporal(lambda client: wf.change_config(client, settings, request))


@config_app.command("log")
def config_log(project: str, limit: int = 20, json_: JsonOpt = False) -> None:
    store = session.store
    target = store.projects.resolve(project)
    session.require(target.p_id, Role.VIEWER, "reading configuration")
    rows = store.configs.log(target.p_id, limit=limit)
    emit(
        rows,
        ["id", "created_at", "author", "version_tag", "message", "blob_hash"],
        title="config log (newest first)",
        json_=json_,
    )


@config_app.command("show")
def config_show(project: str, ref: RefArg = "HEAD", json_: JsonOpt = False) -> None:
    store = session.store
    target = store.projects.resolve(project)
    session.require(target.p_id, Role.VIEWER, "reading configuration")
    commit = store.configs.resolve(target.p_id, ref)
    _, content = store.configs.show(commit.id)
    if json_ or session.json:
        emit({"commit": commit, "content": content}, json_=True)
    else:
        console.print(f"commit {commit.id}  {commit.message}")
        console.print_json(json.dumps(content))


@config_app.command("diff")
def config_diff(project: str, old: str, new: RefArg = "HEAD", json_: JsonOpt = False) -> None:
    """Changes between two commits (ids, tags, HEAD or HEAD~N)."""
    store = session.store
    project_id = store.projects.resolve(project).p_id
    session.require(project_id, Role.VIEWER, "reading configuration")
    changes = store.configs.diff(
        store.configs.resolve(project_id, old).id, store.configs.resolve(project_id, new).id
    )
    if json_ or session.json:
        emit(changes, json_=True)
    elif not changes:
        console.print("(no changes)")
    else:
        for change in changes:
            console.print(str(change), markup=False, highlight=False)


@config_app.command("tag")
def config_tag(project: str, tag: str, ref: RefArg = "HEAD", json_: JsonOpt = False) -> None:
    """Name a commit (once); through ConfigCommitWorkflow, admin of the project."""
    target = session.store.projects.resolve(project)
    request = ConfigRequest(
        op="tag",
        request_id=uuid.uuid4(),
        project_id=target.p_id,
        actor=session.actor().username,
        ref=ref,
        tag=tag,
    )
    emit(_through_workflow(request), RESULT_COLUMNS, json_=json_)


@config_app.command("revert")
def config_revert(project: str, ref: str, json_: JsonOpt = False) -> None:
    """A new head with the content of an older commit (through ConfigCommitWorkflow)."""
    store = session.store
    target = store.projects.resolve(project)
    head = store.configs.head(target.p_id)
    request = ConfigRequest(
        op="revert",
        request_id=uuid.uuid4(),
        project_id=target.p_id,
        actor=session.actor().username,
        ref=ref,
        parent_id=head.id if head else None,
    )
    emit(_through_workflow(request), RESULT_COLUMNS, json_=json_)
