"""The one activity of a configuration change: checked against RBAC, then compare-and-swap."""

from __future__ import annotations

from temporalio import activity

from activities.base import ActivityBase, translated
from domain.errors import InvalidInput
from domain.models import CommitConfig, ConfigCommit, Role
from workflows.shared import ConfigRequest, ConfigResult


class ConfigActivities(ActivityBase):
    @activity.defn(name="apply_config")
    @translated
    def apply_config(self, request: ConfigRequest) -> ConfigResult:
        """commit / tag / revert, by an admin of the project.

        Idempotent across retries: a commit whose parent already has this very child (same
        content and message, by the same author) is returned instead of conflicting.
        """
        actor = self.deps.authz.require(
            request.actor, request.project_id, Role.ADMIN, f"config {request.op}"
        )
        configs = self.store.configs
        if request.op == "commit":
            if request.content is None or not request.message:
                raise InvalidInput("a commit needs content and a message", field="content")
            retried = self._already_committed(request)
            commit = retried or configs.commit(
                CommitConfig(
                    project_id=request.project_id,
                    author_id=actor.id,
                    content=request.content,
                    parent_id=request.parent_id,
                    message=request.message,
                )
            )
        elif request.op == "tag":
            if not request.tag:
                raise InvalidInput("a tag is needed", field="tag")
            target = configs.resolve(request.project_id, request.ref or "HEAD")
            commit = (
                target
                if target.version_tag == request.tag
                else configs.tag(request.project_id, target.id, request.tag)
            )
        else:
            target = configs.resolve(request.project_id, request.ref or "HEAD")
            head = configs.head(request.project_id)
            message = request.message or f"Revert to {target.id}"
            retried = (
                head
                if head
                and head.parent_id == request.parent_id
                and head.message == message
                and head.blob_hash == target.blob_hash
                else None
            )
            commit = retried or configs.revert(
                request.project_id,
                target.id,
                actor.id,
                parent_id=head.id if head else None,
                message=message,
            )
        return ConfigResult(
            commit_id=commit.id,
            project_id=commit.project_id,
            blob_hash=commit.blob_hash,
            parent_id=commit.parent_id,
            message=commit.message,
            version_tag=commit.version_tag,
            author=actor.username,
        )

    def _already_committed(self, request: ConfigRequest) -> ConfigCommit | None:
        from domain.hashing import content_hash

        head = self.store.configs.head(request.project_id)
        if (
            head is not None
            and head.parent_id == request.parent_id
            and head.message == request.message
            and head.blob_hash == content_hash(request.content)
        ):
            return head
        return None
