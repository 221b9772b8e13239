"""Git-style configuration: content-addressed blobs, linear commits, compare-and-swap."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from domain.errors import AlreadyExists, ConfigConflict, InvalidInput, NotFound
from domain.models import CommitConfig, ConfigCommit
from store import Store
from tests.db.helpers import count
from tests.factories import World, seed


def commit(
    w: World,
    project_id: UUID,
    content: dict[str, Any],
    parent: UUID | None = None,
    message: str = "change",
) -> ConfigCommit:
    return w.store.configs.commit(
        CommitConfig(
            project_id=project_id,
            author_id=w.admin.id,
            content=content,
            parent_id=parent,
            message=message,
        )
    )


def head(store: Store, project_id: UUID) -> ConfigCommit:
    found = store.configs.head(project_id)
    assert found is not None
    return found


def test_identical_content_is_stored_once(store: Store) -> None:
    w = seed(store)
    first = commit(w, w.team.p_id, {"defaults": {"pool": "main"}, "annotations": {"a": "1"}})
    commit(w, w.root.p_id, {"annotations": {"a": "1"}, "defaults": {"pool": "main"}})
    assert count(store.db, "config_blobs") == 1
    assert count(store.db, "config_commits") == 2
    assert first.blob_hash == head(store, w.root.p_id).blob_hash


def test_compare_and_swap_on_the_head(store: Store) -> None:
    w = seed(store)
    c1 = commit(w, w.team.p_id, {"defaults": {"pool": "main"}})
    c2 = commit(w, w.team.p_id, {"defaults": {"pool": "gpu"}}, parent=c1.id)
    with pytest.raises(ConfigConflict) as err:  # someone committed since c1
        commit(w, w.team.p_id, {"defaults": {"pool": "x"}}, parent=c1.id)
    assert str(c2.id) in str(err.value)
    with pytest.raises(ConfigConflict):  # "no configuration yet" is stale too
        commit(w, w.team.p_id, {}, parent=None)
    with pytest.raises(NotFound):  # a parent from another project
        commit(w, w.team.p_id, {}, parent=commit(w, w.root.p_id, {}).id)
    assert count(store.db, "config_commits") == 3
    assert head(store, w.team.p_id).id == c2.id


def test_log_diff_tag_revert(store: Store) -> None:
    w = seed(store)
    c1 = commit(w, w.team.p_id, {"limits": {"max_gpu_per_job": 4}}, message="first")
    c2 = commit(
        w,
        w.team.p_id,
        {"limits": {"max_gpu_per_job": 8}, "annotations": {"k": "v"}},
        parent=c1.id,
        message="second",
    )
    assert [r["message"] for r in store.configs.log(w.team.p_id)] == ["second", "first"]
    assert [str(c) for c in store.configs.diff(c1.id, c2.id)] == [
        "+ $.annotations: {'k': 'v'}",
        "~ $.limits.max_gpu_per_job: 4 -> 8",
    ]
    store.configs.tag(w.team.p_id, c1.id, "v1")
    with pytest.raises(InvalidInput, match="already tagged"):
        store.configs.tag(w.team.p_id, c1.id, "v1b")
    with pytest.raises(AlreadyExists):
        store.configs.tag(w.team.p_id, c2.id, "v1")
    assert store.configs.resolve(w.team.p_id, "v1").id == c1.id
    assert store.configs.resolve(w.team.p_id, "HEAD~1").id == c1.id
    reverted = store.configs.revert(w.team.p_id, c1.id, w.admin.id, parent_id=c2.id)
    assert reverted.blob_hash == c1.blob_hash and reverted.parent_id == c2.id
    assert count(store.db, "config_blobs") == 2  # the revert reused the old blob
    assert head(store, w.team.p_id).id == reverted.id


def test_configuration_in_force_is_inherited_and_applied_at_submit(store: Store) -> None:
    w = seed(store)
    c = commit(
        w, w.root.p_id, {"limits": {"max_gpu_per_job": 2}, "defaults": {"priority_class": "low"}}
    )
    child = w.project("child", w.team)
    in_force = store.configs.in_force(child.p_id)
    assert in_force is not None
    commit_row, content = in_force
    assert commit_row.id == c.id and content["limits"]["max_gpu_per_job"] == 2
    with pytest.raises(InvalidInput, match="over the project's limit"):
        w.submit(child, gpu=3)
    job = store.queue.submit(
        __import__("domain.models", fromlist=["SubmitJob"]).SubmitJob(
            project_id=child.p_id, submitted_by=w.alice.id, pool="main", gpu=1
        ),
        actor="alice",
    )
    assert job.priority_class == "low" and job.config_commit_id == c.id
