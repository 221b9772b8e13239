"""Every database operation of quotaflow, grouped by what it works on."""

from __future__ import annotations

from datetime import tzinfo

from settings import Settings, get_settings
from store.audit import AuditStore
from store.catalog import CatalogStore
from store.configs import ConfigStore
from store.db import Database
from store.plans import PlanStore
from store.preemption import BackoffPolicy, PreemptionStore
from store.queue import QueueStore
from store.tenants import TenantStore
from store.topology import ProjectStore


class Store:
    """The store of one process: a :class:`Database` and the repositories over it."""

    def __init__(self, db: Database, zone: tzinfo, backoff: BackoffPolicy | None = None) -> None:
        self.db = db
        self.tenants = TenantStore(db)
        self.projects = ProjectStore(db)
        self.configs = ConfigStore(db)
        self.plans = PlanStore(db, zone)
        self.catalog = CatalogStore(db)
        self.queue = QueueStore(db, zone)
        self.preemption = PreemptionStore(db, zone, backoff)
        self.audit = AuditStore(db)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Store:
        settings = settings or get_settings()
        return cls(
            Database.from_settings(settings),
            settings.zone,
            BackoffPolicy(
                after=settings.requeue_backoff_after,
                base_seconds=settings.requeue_backoff_base_seconds,
                max_seconds=settings.requeue_backoff_max_seconds,
            ),
        )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BackoffPolicy", "Database", "Store"]
