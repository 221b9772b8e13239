"""Priority classes and pools."""

from __future__ import annotations

from domain.errors import NotFound
from domain.models import CreatePriorityClass, Pool, PriorityClass, SetPool
from store.base import Repository, all_rows, one, to_model


class CatalogStore(Repository):
    def create_priority_class(self, request: CreatePriorityClass) -> PriorityClass:
        with self.db.connection() as conn:
            row = one(conn, "priority_class_insert", request.model_dump())
            assert row is not None
            return to_model(PriorityClass, row)

    def priority_classes(self) -> list[PriorityClass]:
        with self.db.connection() as conn:
            return [to_model(PriorityClass, r) for r in all_rows(conn, "priority_class_list")]

    def priority_class(self, name: str | None) -> PriorityClass:
        """A class by name; ``None`` means the global default."""
        with self.db.connection() as conn:
            row = one(conn, "priority_class_get", {"name": name})
        if row is None:
            raise NotFound(
                f"no priority class {name!r}"
                if name
                else "no priority class is the global default; name one"
            )
        return to_model(PriorityClass, row)

    def set_pool(self, request: SetPool) -> Pool:
        with self.db.connection() as conn:
            row = one(conn, "pool_upsert", request.model_dump())
            assert row is not None
            return to_model(Pool, row)

    def pool(self, name: str) -> Pool:
        with self.db.connection() as conn:
            row = one(conn, "pool_get", {"name": name})
        if row is None:
            raise NotFound(f"no pool named {name!r}")
        return to_model(Pool, row)

    def pools(self) -> list[Pool]:
        with self.db.connection() as conn:
            return [to_model(Pool, r) for r in all_rows(conn, "pool_list")]
