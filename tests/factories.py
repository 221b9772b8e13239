"""Building blocks for tests: a small organisation in a fresh database."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.models import (
    AddPlan,
    CreateGroup,
    CreateProject,
    CreateUser,
    Job,
    Project,
    ResourceType,
    SetPool,
    SubmitJob,
    User,
)
from store import Store


@dataclass
class World:
    store: Store
    admin: User
    alice: User
    root: Project
    team: Project
    pool: str

    def project(self, name: str, parent: Project | None = None) -> Project:
        return self.store.projects.create(
            CreateProject(name=name, owner_id=self.admin.id, parent_id=(parent or self.root).p_id)
        )

    def plan(
        self,
        project: Project,
        quantity: int,
        window: str = "always",
        resource: ResourceType = ResourceType.GPU,
    ) -> None:
        self.store.plans.add(
            AddPlan(
                project_id=project.p_id,
                resource_owner_id=self.admin.id,
                resource_type=resource,
                quantity=quantity,
                window=window,
            )
        )

    def submit(
        self,
        project: Project | None = None,
        *,
        gpu: int = 1,
        cpu: int = 0,
        priority_class: str = "normal",
        pool: str | None = None,
        name: str = "",
    ) -> Job:
        return self.store.queue.submit(
            SubmitJob(
                project_id=(project or self.team).p_id,
                submitted_by=self.alice.id,
                pool=pool or self.pool,
                priority_class=priority_class,
                gpu=gpu,
                cpu=cpu,
                name=name,
            ),
            actor="alice",
        )


def seed(store: Store, *, gpus: int = 8, cpus: int = 64, pool: str = "main") -> World:
    admin = store.tenants.create_user(CreateUser(username="root", platform_admin=True))
    alice = store.tenants.create_user(CreateUser(username="alice"))
    store.tenants.create_group(CreateGroup(name="ml"))
    root = store.projects.create(CreateProject(name="org", owner_id=admin.id))
    team = store.projects.create(CreateProject(name="team", owner_id=admin.id, parent_id=root.p_id))
    store.catalog.set_pool(SetPool(name=pool, gpu_capacity=gpus, cpu_capacity=cpus))
    return World(store, admin, alice, root, team, pool)


def job_ids(jobs: list[Job]) -> list[UUID]:
    return [j.id for j in jobs]
