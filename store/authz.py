"""Who may change what: every mutation names an actor and is checked here.

* member (or above) on a project: submit and cancel jobs there;
* admin on a project: its plans, configuration, role bindings and sub-projects;
* platform admin: users, groups, pools, priority classes, top-level projects, and anything else.

A binding on a project applies to its whole subtree (see the ``role_effective`` query), owners are
admins of their subtree, and a user with no binding on a subtree can neither read nor change it.
"""

from __future__ import annotations

from uuid import UUID

from domain.errors import NotFound, PermissionDenied
from domain.models import Role, User
from store.db import Database
from store.tenants import TenantStore
from store.topology import ProjectStore


class Authorizer:
    def __init__(self, db: Database) -> None:
        self.tenants = TenantStore(db)
        self.projects = ProjectStore(db)

    def user(self, username: str) -> User:
        try:
            return self.tenants.user_by_name(username)
        except NotFound:
            raise PermissionDenied(f"unknown actor {username!r}") from None

    def require(self, username: str, project_id: UUID, needed: Role, action: str) -> User:
        """The acting user, if they hold ``needed`` on the project; PermissionDenied otherwise."""
        actor = self.user(username)
        role = self.tenants.effective_role(actor.id, project_id)
        if role is None or not role.allows(needed):
            # Say nothing about a project the actor cannot even see.
            where = self.projects.display_path(project_id) if role else str(project_id)
            held = f"is {role.value} on" if role else "has no role on"
            raise PermissionDenied(f"{username} {held} {where}; {action} needs {needed.value}")
        return actor

    def require_platform_admin(self, username: str, action: str) -> User:
        actor = self.user(username)
        if not actor.platform_admin:
            raise PermissionDenied(f"{username} is not a platform admin; {action} needs one")
        return actor

    def can_see(self, username: str, project_id: UUID) -> bool:
        actor = self.user(username)
        return self.tenants.effective_role(actor.id, project_id) is not None
