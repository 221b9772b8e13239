"""Users, groups, memberships, role bindings and storages."""

from __future__ import annotations

from uuid import UUID

from psycopg.types.json import Jsonb

from domain.errors import InvalidInput, NotFound
from domain.models import (
    CreateGroup,
    CreateStorage,
    CreateUser,
    GrantRole,
    Group,
    Owner,
    OwnerKind,
    Role,
    Storage,
    User,
)
from store.base import Repository, all_rows, one, to_model
from store.queries import q


class TenantStore(Repository):
    def create_user(self, request: CreateUser) -> User:
        with self.db.connection() as conn:
            owner = one(conn, "owner_insert", {"kind": "user"})
            assert owner is not None
            row = one(conn, "user_insert", {"id": owner["id"], **request.model_dump()})
            assert row is not None
            return to_model(User, row)

    def create_group(self, request: CreateGroup) -> Group:
        with self.db.connection() as conn:
            owner = one(conn, "owner_insert", {"kind": "group"})
            assert owner is not None
            row = one(conn, "group_insert", {"id": owner["id"], "name": request.name})
            assert row is not None
            return to_model(Group, row)

    def add_member(self, group_id: UUID, user_id: UUID) -> None:
        with self.db.connection() as conn:
            conn.execute(q("group_member_insert"), {"group_id": group_id, "user_id": user_id})

    def user(self, user_id: UUID) -> User:
        with self.db.connection() as conn:
            row = one(conn, "user_get", {"id": user_id})
        if row is None:
            raise NotFound(f"no user with id {user_id}")
        return to_model(User, row)

    def user_by_name(self, username: str) -> User:
        with self.db.connection() as conn:
            row = one(conn, "user_get_by_username", {"username": username})
        if row is None:
            raise NotFound(f"no user named {username!r}")
        return to_model(User, row)

    def group_by_name(self, name: str) -> Group:
        with self.db.connection() as conn:
            row = one(conn, "group_get_by_name", {"name": name})
        if row is None:
            raise NotFound(f"no group named {name!r}")
        return to_model(Group, row)

    def users(self) -> list[User]:
        with self.db.connection() as conn:
            return [to_model(User, r) for r in all_rows(conn, "user_list")]

    def groups(self) -> list[dict[str, object]]:
        with self.db.connection() as conn:
            return all_rows(conn, "group_list")

    def owner(self, owner_id: UUID) -> Owner:
        with self.db.connection() as conn:
            row = one(conn, "owner_get", {"id": owner_id})
        if row is None:
            raise NotFound(f"no user or group with id {owner_id}")
        return to_model(Owner, row)

    def resolve_owner(self, ref: str) -> Owner:
        """``user:alice``, ``group:ml``, a bare name (when only one owner has it) or an id."""
        kind: OwnerKind | None = None
        name = ref.strip()
        if ":" in name:
            prefix, _, name = name.partition(":")
            if prefix not in ("user", "group"):
                raise InvalidInput(f"{ref!r}: use user:NAME or group:NAME", field="owner")
            kind = OwnerKind(prefix)
        try:
            return self.owner(UUID(name))
        except ValueError:
            pass
        with self.db.connection() as conn:
            rows = [
                r
                for r in all_rows(conn, "owner_find_by_name", {"name": name})
                if kind is None or r["kind"] == kind
            ]
        if not rows:
            raise NotFound(f"no user or group named {name!r}")
        if len(rows) > 1:
            raise InvalidInput(
                f"{name!r} is both a user and a group; say user:{name} or group:{name}",
                field="owner",
            )
        return to_model(Owner, rows[0])

    def grant(self, request: GrantRole) -> None:
        with self.db.connection() as conn:
            conn.execute(q("role_binding_upsert"), request.model_dump())

    def bindings(self, project_id: UUID) -> list[dict[str, object]]:
        with self.db.connection() as conn:
            return all_rows(conn, "role_binding_list", {"project_id": project_id})

    def effective_role(self, user_id: UUID, project_id: UUID) -> Role | None:
        with self.db.connection() as conn:
            row = one(conn, "role_effective", {"user_id": user_id, "project_id": project_id})
        return Role(row["role"]) if row and row["role"] else None

    def create_storage(self, request: CreateStorage) -> Storage:
        with self.db.connection() as conn:
            row = conn.execute(
                "INSERT INTO storages (owner_id, name, affinity_config) VALUES (%s, %s, %s) "
                "RETURNING id, owner_id, name, affinity_config",
                (request.owner_id, request.name, Jsonb(request.affinity_config.to_json())),
            ).fetchone()
            assert row is not None
            return to_model(Storage, row)
