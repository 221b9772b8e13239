"""Admin commands: database, tenants, projects, roles, storages, classes, pools, plans."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

import typer
from temporalio.client import Client

from cli.app import JsonOpt, app, emit, say, session, validated
from domain.errors import InvalidInput, QuotaflowError
from domain.labels import is_ancestor_or_self
from domain.models import (
    AddPlan,
    CreateGroup,
    CreatePriorityClass,
    CreateProject,
    CreateStorage,
    CreateUser,
    GrantRole,
    PreemptionPolicy,
    ResourceType,
    Role,
    SetPool,
)
from domain.weekwindow import second_of_week
from settings import get_settings

db_app = typer.Typer(help="Migrations.", no_args_is_help=True)
user_app = typer.Typer(help="Users.", no_args_is_help=True)
group_app = typer.Typer(help="Groups and membership.", no_args_is_help=True)
project_app = typer.Typer(help="The project tree.", no_args_is_help=True)
role_app = typer.Typer(
    help="Role bindings (viewer < member < admin, inherited down the tree).", no_args_is_help=True
)
storage_app = typer.Typer(help="Storages and their scheduling hints.", no_args_is_help=True)
class_app = typer.Typer(help="Priority classes.", no_args_is_help=True)
pool_app = typer.Typer(help="Pools: what the cluster can run.", no_args_is_help=True)
plan_app = typer.Typer(help="Weekly GPU/CPU plans (quotas).", no_args_is_help=True)

for name, sub in [
    ("db", db_app),
    ("user", user_app),
    ("group", group_app),
    ("project", project_app),
    ("role", role_app),
    ("storage", storage_app),
    ("priority-class", class_app),
    ("pool", pool_app),
    ("plan", plan_app),
]:
    app.add_typer(sub, name=name)


# --- db ----------------------------------------------------------------------------------


@db_app.command("migrate")
def db_migrate(json_: JsonOpt = False) -> None:
    """Apply the migrations the database does not have yet."""
    from store.migrate import migrate

    with session.store.db.connection() as conn:
        applied = migrate(conn)
    say(
        f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""),
        json_=json_,
        applied=applied,
    )


@db_app.command("status")
def db_status(json_: JsonOpt = False) -> None:
    """Every migration and whether (and when) it was applied."""
    from store.migrate import status

    with session.store.db.connection() as conn:
        states = status(conn)
    emit(
        [
            {
                "version": s.version,
                "name": s.name,
                "applied_at": s.applied_at,
                "checksum": {None: "", True: "ok", False: "EDITED"}[s.checksum_ok],
            }
            for s in states
        ],
        ["version", "name", "applied_at", "checksum"],
        title="migrations",
        json_=json_,
    )


# --- users and groups --------------------------------------------------------------------


@user_app.command("create")
def user_create(
    username: str,
    display_name: Annotated[str | None, typer.Option("--name")] = None,
    platform_admin: Annotated[bool, typer.Option("--platform-admin")] = False,
    json_: JsonOpt = False,
) -> None:
    """Create a user (--platform-admin: may change anything).

    The very first user needs no --as and must be a platform admin; after that, only a
    platform admin creates users.
    """
    if session.store.tenants.users():
        session.require_platform_admin("creating users")
    elif not platform_admin:
        raise InvalidInput(
            "the first user must be a platform admin: add --platform-admin", field="platform_admin"
        )
    with validated():
        request = CreateUser(
            username=username, display_name=display_name, platform_admin=platform_admin
        )
    emit(session.store.tenants.create_user(request), json_=json_)


@user_app.command("list")
def user_list(json_: JsonOpt = False) -> None:
    emit(
        session.store.tenants.users(),
        ["username", "display_name", "platform_admin", "id"],
        title="users",
        json_=json_,
    )


@group_app.command("create")
def group_create(name: str, json_: JsonOpt = False) -> None:
    session.require_platform_admin("creating groups")
    with validated():
        request = CreateGroup(name=name)
    emit(session.store.tenants.create_group(request), json_=json_)


@group_app.command("add-member")
def group_add_member(group: str, username: str, json_: JsonOpt = False) -> None:
    store = session.store
    session.require_platform_admin("changing group membership")
    g = store.tenants.group_by_name(group)
    u = store.tenants.user_by_name(username)
    store.tenants.add_member(g.id, u.id)
    say(f"{username} is now a member of {group}", json_=json_, group=group, user=username)


@group_app.command("list")
def group_list(json_: JsonOpt = False) -> None:
    emit(session.store.tenants.groups(), ["name", "members", "id"], title="groups", json_=json_)


# --- projects ----------------------------------------------------------------------------


@project_app.command("create")
def project_create(
    path: Annotated[str, typer.Argument(help="org/team/new-project; the parent must exist")],
    owner: Annotated[str, typer.Option(help="user:NAME or group:NAME")],
    json_: JsonOpt = False,
) -> None:
    """Create a project under an existing parent (or at the top level)."""
    store = session.store
    *parents, name = [p for p in path.strip("/").split("/") if p] or [""]
    parent_id = store.projects.resolve("/".join(parents)).p_id if parents else None
    if parent_id is None:
        session.require_platform_admin("creating a top-level project")
    else:
        session.require(parent_id, Role.ADMIN, "creating a sub-project")
    owner_id = store.tenants.resolve_owner(owner).id
    with validated():
        request = CreateProject(name=name, owner_id=owner_id, parent_id=parent_id)
    emit(store.projects.create(request), ["name", "p_id", "path", "parent_id"], json_=json_)


@project_app.command("move")
def project_move(
    project: str,
    new_parent: Annotated[str, typer.Argument(help="the new parent, or / for the top level")],
    json_: JsonOpt = False,
) -> None:
    """Move a project and its whole subtree under a new parent."""
    store = session.store
    source = store.projects.resolve(project)
    target = None if new_parent.strip() == "/" else store.projects.resolve(new_parent).p_id
    session.require(source.p_id, Role.ADMIN, "moving a project")
    if target is None:
        session.require_platform_admin("making a top-level project")
    else:
        session.require(target, Role.ADMIN, "moving a project there")
    moved = store.projects.move(source.p_id, target)
    say(f"moved {moved} project(s)", json_=json_, moved=moved)


@project_app.command("tree")
def project_tree(
    root: Annotated[str | None, typer.Argument(help="only this subtree")] = None,
    json_: JsonOpt = False,
) -> None:
    """The project tree (names indented by depth): the parts the actor may see."""
    store = session.store
    actor = session.actor()
    root_id = store.projects.resolve(root).p_id if root else None
    if root_id is not None:
        session.require(root_id, Role.VIEWER, "reading a project")
    rows = store.projects.tree(root_id)
    if not actor.platform_admin:
        # A binding (or ownership) applies to a subtree: keep what lies under a visible node.
        visible = [
            r["path"] for r in rows if store.tenants.effective_role(actor.id, r["p_id"]) is not None
        ]
        rows = [r for r in rows if any(is_ancestor_or_self(v, r["path"]) for v in visible)]
    if json_ or session.json:
        emit(rows, json_=True)
        return
    base = min((r["depth"] for r in rows), default=1)
    emit(
        [
            {
                "project": "  " * (r["depth"] - base) + r["name"],
                "owner": r["owner"],
                "id": r["p_id"],
            }
            for r in rows
        ],
        ["project", "owner", "id"],
        title="projects",
    )


# --- roles and storages ------------------------------------------------------------------


@role_app.command("grant")
def role_grant(
    principal: Annotated[str, typer.Argument(help="user:NAME or group:NAME")],
    role: Role,
    project: str,
    json_: JsonOpt = False,
) -> None:
    """Grant a role on a project and its whole subtree."""
    store = session.store
    owner = store.tenants.resolve_owner(principal)
    target = store.projects.resolve(project)
    session.require(target.p_id, Role.ADMIN, "granting roles")
    store.tenants.grant(GrantRole(principal_id=owner.id, project_id=target.p_id, role=role))
    say(
        f"{owner.kind}:{owner.name} is {role.value} on {project} and below",
        json_=json_,
        principal=owner.name,
        role=role.value,
        project=str(target.p_id),
    )


@role_app.command("list")
def role_list(project: str, json_: JsonOpt = False) -> None:
    """The bindings that apply on a project (its own and its ancestors')."""
    store = session.store
    target = store.projects.resolve(project)
    session.require(target.p_id, Role.VIEWER, "reading role bindings")
    rows = store.tenants.bindings(target.p_id)
    emit(rows, ["principal", "kind", "role", "project"], title="role bindings", json_=json_)


@storage_app.command("create")
def storage_create(
    name: str,
    owner: Annotated[str, typer.Option(help="user:NAME or group:NAME")],
    affinity: Annotated[
        str, typer.Option(help="JSON: nodeSelector / affinity / tolerations")
    ] = "{}",
    json_: JsonOpt = False,
) -> None:
    from domain.hashing import parse_json_object

    store = session.store
    owner_ref = store.tenants.resolve_owner(owner)
    actor = session.actor()
    if not actor.platform_admin and owner_ref.id != actor.id:
        session.require_platform_admin("creating a storage for someone else")
    owner_id = owner_ref.id
    config = parse_json_object(affinity, field="affinity")
    with validated():
        request = CreateStorage.model_validate(
            {"owner_id": owner_id, "name": name, "affinity_config": config}
        )
    emit(store.tenants.create_storage(request), json_=json_)


# --- priority classes and pools -----------------------------------------------------------


@class_app.command("create")
def class_create(
    name: str,
    value: int,
    policy: Annotated[
        PreemptionPolicy, typer.Option("--policy")
    ] = PreemptionPolicy.PREEMPT_LOWER_PRIORITY,
    default: Annotated[bool, typer.Option("--global-default")] = False,
    min_runtime: Annotated[int, typer.Option("--min-runtime", help="seconds")] = 0,
    description: Annotated[str | None, typer.Option()] = None,
    json_: JsonOpt = False,
) -> None:
    session.require_platform_admin("creating priority classes")
    with validated():
        request = CreatePriorityClass(
            name=name,
            value=value,
            preemption_policy=policy,
            global_default=default,
            min_runtime_seconds=min_runtime,
            description=description,
        )
    emit(session.store.catalog.create_priority_class(request), json_=json_)


@class_app.command("list")
def class_list(json_: JsonOpt = False) -> None:
    emit(
        session.store.catalog.priority_classes(),
        [
            "name",
            "value",
            "preemption_policy",
            "global_default",
            "min_runtime_seconds",
            "description",
        ],
        title="priority classes",
        json_=json_,
    )


@pool_app.command("set")
def pool_set(
    name: str,
    gpu: Annotated[int, typer.Option("--gpu", help="GPU capacity")],
    cpu: Annotated[int, typer.Option("--cpu", help="CPU capacity (cores)")],
    json_: JsonOpt = False,
) -> None:
    """Create a pool or change its capacity."""
    session.require_platform_admin("changing pools")
    with validated():
        request = SetPool(name=name, gpu_capacity=gpu, cpu_capacity=cpu)
    emit(session.store.catalog.set_pool(request), json_=json_)


@pool_app.command("list")
def pool_list(json_: JsonOpt = False) -> None:
    emit(session.store.catalog.pools(), title="pools", json_=json_)


# --- plans -------------------------------------------------------------------------------


@plan_app.command("add")
def plan_add(
    project: str,
    resource: ResourceType,
    quantity: int,
    window: Annotated[
        str, typer.Argument(help="'Mon 09:00-18:00', 'Fri 22:00-Mon 06:00', 'always'")
    ],
    owner: Annotated[
        str | None, typer.Option(help="who holds the plan (default: the project's owner)")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Add a weekly plan; an overlap with an existing plan is refused and named."""
    store = session.store
    target = store.projects.resolve(project)
    session.require(target.p_id, Role.ADMIN, "changing plans")
    owner_id = store.tenants.resolve_owner(owner).id if owner else target.owner_id
    with validated():
        request = AddPlan(
            project_id=target.p_id,
            resource_owner_id=owner_id,
            resource_type=resource,
            quantity=quantity,
            window=window,
        )
    plan = store.plans.add(request)
    wake_dispatchers("plan added")
    emit(plan, ["plan_group", "resource_type", "quantity", "window"], json_=json_)


@plan_app.command("list")
def plan_list(project: str, json_: JsonOpt = False) -> None:
    store = session.store
    target = store.projects.resolve(project)
    session.require(target.p_id, Role.VIEWER, "reading plans")
    emit(
        store.plans.for_project(target.p_id),
        ["plan_group", "resource_type", "quantity", "window"],
        title="plans",
        json_=json_,
    )


@plan_app.command("remove")
def plan_remove(plan_group: UUID, json_: JsonOpt = False) -> None:
    session.require(session.store.plans.project_of(plan_group), Role.ADMIN, "changing plans")
    removed = session.store.plans.remove(plan_group)
    wake_dispatchers("plan removed")
    say(f"removed plan {plan_group} ({removed} row(s))", json_=json_, removed=removed)


@plan_app.command("quota")
def plan_quota(
    project: str,
    at: Annotated[str | None, typer.Option(help="ISO instant; default now")] = None,
    json_: JsonOpt = False,
) -> None:
    """The plans in force at an instant along the project's path, with subtree usage."""
    store = session.store
    try:
        instant = datetime.fromisoformat(at) if at else datetime.now(UTC)
    except ValueError as exc:
        raise InvalidInput(f"{at!r} is not an ISO 8601 instant", field="at") from exc
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    target = store.projects.resolve(project)
    session.require(target.p_id, Role.VIEWER, "reading quotas")
    rows = store.plans.quota_at(target.p_id, instant)
    sow = second_of_week(instant, get_settings().zone)
    emit(
        rows,
        ["name", "resource_type", "quantity", "in_use", "window"],
        title=f"quota at second {sow} of the week",
        json_=json_,
    )


def wake_dispatchers(reason: str) -> None:
    """Plans changed, so admission may differ now. Best effort: without Temporal running, the
    dispatchers' timers notice within their idle period anyway."""
    from activities.signals import wake_dispatcher

    settings = get_settings()
    pools = [p.name for p in session.store.catalog.pools()]

    async def wake(client: Client) -> None:
        for pool in pools:
            await wake_dispatcher(client, settings, pool, reason)

    with contextlib.suppress(QuotaflowError, OSError, RuntimeError):
        session.temporal(wake)
