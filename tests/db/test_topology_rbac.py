"""The project tree and inherited RBAC on a real PostgreSQL."""

from __future__ import annotations

import pytest

from domain.errors import AlreadyExists, NotFound, TopologyError
from domain.models import CreateGroup, CreateUser, GrantRole, Role
from store import Store
from tests.db.helpers import assert_counters_consistent
from tests.factories import seed


def test_ancestors_descendants_and_names(store: Store) -> None:
    w = seed(store)
    a = w.project("a", w.team)
    a1 = w.project("a1", a)
    b = w.project("b", w.team)
    assert [p.name for p in store.projects.ancestors(a1.p_id)] == ["org", "team", "a"]
    assert {p.name for p in store.projects.descendants(w.team.p_id)} == {"a", "a1", "b"}
    assert store.projects.resolve("org/team/a/a1").p_id == a1.p_id
    assert store.projects.resolve(str(b.p_id)).name == "b"
    assert store.projects.display_path(a1.p_id) == "org/team/a/a1"
    with pytest.raises(NotFound):
        store.projects.resolve("org/nope")
    with pytest.raises(AlreadyExists):
        w.project("a", w.team)


def test_move_subtree_rewrites_every_path_in_one_statement(store: Store) -> None:
    w = seed(store)
    a = w.project("a", w.team)
    a1 = w.project("a1", a)
    a11 = w.project("a11", a1)
    other = w.project("other", w.root)
    assert store.projects.move(a.p_id, other.p_id) == 3
    moved = {p.name: p for p in store.projects.descendants(other.p_id)}
    assert moved["a11"].path == f"{other.path}.p{a.p_id.hex}.p{a1.p_id.hex}.p{a11.p_id.hex}"
    assert store.projects.get(a.p_id).parent_id == other.p_id
    assert store.projects.descendants(w.team.p_id) == []
    # to the top level
    assert store.projects.move(a1.p_id, None) == 2
    assert store.projects.get(a1.p_id).path == f"p{a1.p_id.hex}"


def test_moving_under_own_descendant_is_refused_and_changes_nothing(store: Store) -> None:
    w = seed(store)
    a = w.project("a", w.team)
    a1 = w.project("a1", a)
    before = store.projects.tree()
    with pytest.raises(TopologyError, match="descendants"):
        store.projects.move(a.p_id, a1.p_id)
    with pytest.raises(TopologyError):
        store.projects.move(a.p_id, a.p_id)
    with pytest.raises(NotFound):
        store.projects.move(a.p_id, w.alice.id)
    assert store.projects.tree() == before


def test_usage_moves_with_the_subtree(store: Store) -> None:
    w = seed(store)
    a = w.project("a", w.team)
    other = w.project("other", w.root)
    w.submit(a, gpu=3)
    store.queue.claim("main", 10)
    store.projects.move(a.p_id, other.p_id)
    assert_counters_consistent(store.db)


def test_effective_role_through_groups_on_ancestors_in_one_query(store: Store) -> None:
    w = seed(store)
    bob = store.tenants.create_user(CreateUser(username="bob"))
    carol = store.tenants.create_user(CreateUser(username="carol"))
    ml = store.tenants.group_by_name("ml")
    store.tenants.add_member(ml.id, bob.id)
    deep = w.project("deep", w.project("mid", w.team))
    sibling = w.project("sibling", w.root)

    store.tenants.grant(GrantRole(principal_id=ml.id, project_id=w.team.p_id, role=Role.MEMBER))
    assert store.tenants.effective_role(bob.id, deep.p_id) == Role.MEMBER
    assert store.tenants.effective_role(bob.id, sibling.p_id) is None
    assert store.tenants.effective_role(carol.id, deep.p_id) is None
    # the strongest binding wins, from any ancestor
    store.tenants.grant(GrantRole(principal_id=bob.id, project_id=w.root.p_id, role=Role.VIEWER))
    store.tenants.grant(GrantRole(principal_id=bob.id, project_id=deep.p_id, role=Role.ADMIN))
    assert store.tenants.effective_role(bob.id, deep.p_id) == Role.ADMIN
    assert store.tenants.effective_role(bob.id, sibling.p_id) == Role.VIEWER
    # owners are admins of their subtree; platform admins everywhere
    assert store.tenants.effective_role(w.admin.id, sibling.p_id) == Role.ADMIN
    team_owned = store.projects.create(
        __import__("domain.models", fromlist=["CreateProject"]).CreateProject(
            name="owned", owner_id=carol.id, parent_id=sibling.p_id
        )
    )
    assert store.tenants.effective_role(carol.id, team_owned.p_id) == Role.ADMIN
    assert store.tenants.effective_role(carol.id, sibling.p_id) is None


def test_owner_resolution(store: Store) -> None:
    seed(store)
    store.tenants.create_group(CreateGroup(name="alice"))
    assert store.tenants.resolve_owner("group:ml").kind == "group"
    assert store.tenants.resolve_owner("root").kind == "user"
    with pytest.raises(Exception, match="both a user and a group"):
        store.tenants.resolve_owner("alice")
    assert store.tenants.resolve_owner("user:alice").kind == "user"
    with pytest.raises(NotFound):
        store.tenants.resolve_owner("nobody")
