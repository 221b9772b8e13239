"""Project configuration, versioned git-style: content-addressed blobs and linear commits."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from domain.errors import ConfigConflict, InvalidInput, NotFound
from domain.hashing import content_hash
from domain.jsondiff import Change, diff
from domain.models import CommitConfig, ConfigCommit
from store.base import Repository, all_rows, one, to_model


class ConfigStore(Repository):
    def commit(self, request: CommitConfig) -> ConfigCommit:
        """Save content as the project's new head, if ``parent_id`` is still the head.

        hash → blob (inserted only if new) → commit whose parent must be the current head: a
        stale parent raises :class:`ConfigConflict` naming the actual head; nothing is written.
        """
        digest = content_hash(request.content)
        try:
            with self.db.connection() as conn:
                conn.execute(
                    "INSERT INTO config_blobs (hash, content) VALUES (%s, %s) "
                    "ON CONFLICT (hash) DO NOTHING",
                    (digest, Jsonb(request.content)),
                )
                row = one(
                    conn,
                    "config_commit_insert",
                    {
                        "project_id": request.project_id,
                        "blob_hash": digest,
                        "parent_id": request.parent_id,
                        "author_id": request.author_id,
                        "message": request.message,
                    },
                )
                assert row is not None
                return to_model(ConfigCommit, row)
        except ConfigConflict as exc:
            head = self.head(request.project_id)
            raise ConfigConflict(
                f"stale parent {request.parent_id or '(none)'}: the head of the project is "
                f"{head.id if head else '(none)'}; rebase on it and commit again",
                head=str(head.id) if head else None,
            ) from exc

    def head(self, project_id: UUID) -> ConfigCommit | None:
        with self.db.connection() as conn:
            row = one(conn, "config_head", {"project_id": project_id})
        return to_model(ConfigCommit, row) if row else None

    def in_force(self, project_id: UUID) -> tuple[ConfigCommit, dict[str, Any]] | None:
        """The head of the project, else of its nearest ancestor that has one, with content."""
        with self.db.connection() as conn:
            row = one(conn, "config_head_in_force", {"project_id": project_id})
        return (to_model(ConfigCommit, row), row["content"]) if row else None

    def show(self, commit_id: UUID) -> tuple[ConfigCommit, dict[str, Any]]:
        with self.db.connection() as conn:
            row = one(conn, "config_commit_get", {"commit_id": commit_id})
        if row is None:
            raise NotFound(f"no config commit {commit_id}")
        return to_model(ConfigCommit, row), row["content"]

    def resolve(self, project_id: UUID, ref: str) -> ConfigCommit:
        """A commit by id, by tag, or ``HEAD`` / ``HEAD~N``."""
        ref = ref.strip()
        if ref.upper().startswith("HEAD"):
            back = ref[4:]
            steps = int(back[1:]) if back.startswith("~") and back[1:].isdigit() else 0
            if back and not (back.startswith("~") and back[1:].isdigit()):
                raise InvalidInput(f"{ref!r}: use HEAD or HEAD~N", field="ref")
            history = self.log(project_id, limit=steps + 1)
            if len(history) <= steps:
                raise NotFound(f"{ref} does not exist: the project has {len(history)} commit(s)")
            return to_model(ConfigCommit, history[steps])
        try:
            commit, _ = self.show(UUID(ref))
        except ValueError:
            with self.db.connection() as conn:
                row = one(conn, "config_commit_by_tag", {"project_id": project_id, "tag": ref})
            if row is None:
                raise NotFound(f"no commit or tag {ref!r} in this project") from None
            return to_model(ConfigCommit, row)
        if commit.project_id != project_id:
            raise NotFound(f"commit {ref} belongs to another project")
        return commit

    def log(self, project_id: UUID, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return all_rows(conn, "config_log", {"project_id": project_id, "limit": limit})

    def diff(self, old_commit: UUID, new_commit: UUID) -> list[Change]:
        _, old = self.show(old_commit)
        _, new = self.show(new_commit)
        return diff(old, new)

    def tag(self, project_id: UUID, commit_id: UUID, tag: str) -> ConfigCommit:
        with self.db.connection() as conn:
            row = one(
                conn,
                "config_commit_tag",
                {"project_id": project_id, "commit_id": commit_id, "tag": tag},
            )
        if row is None:
            commit, _ = self.show(commit_id)
            if commit.project_id != project_id:
                raise NotFound(f"commit {commit_id} belongs to another project")
            raise InvalidInput(
                f"commit {commit_id} is already tagged {commit.version_tag!r}; tags are set once",
                field="tag",
            )
        return to_model(ConfigCommit, row)

    def revert(
        self,
        project_id: UUID,
        target: UUID,
        author_id: UUID,
        parent_id: UUID | None,
        message: str | None = None,
    ) -> ConfigCommit:
        """A new commit on top of ``parent_id`` pointing at ``target``'s blob."""
        commit, content = self.show(target)
        if commit.project_id != project_id:
            raise NotFound(f"commit {target} belongs to another project")
        return self.commit(
            CommitConfig(
                project_id=project_id,
                author_id=author_id,
                content=content,
                parent_id=parent_id,
                message=message or f"Revert to {target}",
            )
        )
