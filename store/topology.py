"""The project tree: create, resolve, move a subtree, ancestors, descendants."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.errors import InvalidInput, NotFound, TopologyError
from domain.labels import is_ancestor_or_self
from domain.models import CreateProject, Project
from store.base import Repository, all_rows, one, to_model
from store.queries import q


class ProjectStore(Repository):
    def create(self, request: CreateProject) -> Project:
        with self.db.connection() as conn:
            row = one(conn, "project_insert", request.model_dump())
            assert row is not None
            return to_model(Project, row)

    def get(self, project_id: UUID) -> Project:
        with self.db.connection() as conn:
            row = one(conn, "project_get", {"project_id": project_id})
        if row is None:
            raise NotFound(f"no project with id {project_id}")
        return to_model(Project, row)

    def resolve(self, ref: str) -> Project:
        """A project by id or by its names from the root: ``org/team/project``."""
        try:
            return self.get(UUID(ref))
        except ValueError:
            pass
        names = [part.strip() for part in ref.strip().strip("/").split("/")]
        if not names or any(not part for part in names):
            raise InvalidInput(
                f"{ref!r} is not a project id or a path like org/team", field="project"
            )
        with self.db.connection() as conn:
            row = one(conn, "project_get_by_names", {"names": names})
        if row is None:
            raise NotFound(f"no project {'/'.join(names)!r}")
        return to_model(Project, row)

    def move(self, project_id: UUID, new_parent_id: UUID | None) -> int:
        """Move a project and its subtree under ``new_parent_id`` (None: make it a root).

        Returns how many projects moved. Moving under the project itself or one of its
        descendants raises :class:`TopologyError`; nothing changes.
        """
        with self.db.connection() as conn:
            conn.execute(q("project_usage_lock"))
            moved = conn.execute(
                q("project_move_subtree"),
                {"project_id": project_id, "new_parent_id": new_parent_id},
            ).rowcount
            if moved:
                return moved
            conn.rollback()
            source = one(conn, "project_get", {"project_id": project_id})
            if source is None:
                raise NotFound(f"no project with id {project_id}")
            target = one(conn, "project_get", {"project_id": new_parent_id})
            if target is None:
                raise NotFound(f"no project with id {new_parent_id} to move under")
            if is_ancestor_or_self(source["path"], target["path"]):
                raise TopologyError(
                    f"cannot move {source['name']!r} under {target['name']!r}: "
                    "it is the project itself or one of its descendants"
                )
            raise TopologyError(f"project {source['name']!r} could not be moved")

    def ancestors(self, project_id: UUID) -> list[Project]:
        with self.db.connection() as conn:
            return [
                to_model(Project, r)
                for r in all_rows(conn, "project_ancestors", {"project_id": project_id})
            ]

    def descendants(self, project_id: UUID) -> list[Project]:
        with self.db.connection() as conn:
            return [
                to_model(Project, r)
                for r in all_rows(conn, "project_descendants", {"project_id": project_id})
            ]

    def tree(self, root_id: UUID | None = None) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return all_rows(conn, "project_tree", {"root_id": root_id})

    def display_path(self, project_id: UUID) -> str:
        """``org/team/project``: names, root first."""
        chain = [*self.ancestors(project_id), self.get(project_id)]
        return "/".join(p.name for p in chain)
