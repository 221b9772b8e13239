"""Gauges read from PostgreSQL when Prometheus scrapes: queue depth, pool usage, active sagas.

The database is the truth, so these are not counted in the process: every scrape asks it, with
three small queries on partial indexes (observability/queries.sql). Every worker process
reports the same values; aggregate them with ``max``, not ``sum``. A scrape never waits long
for a busy connection pool or a slow server: it gives up after a few seconds and reports
``quotaflow_database_up 0`` instead of failing the whole endpoint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from observability.metrics import query
from store.errors import translated

if TYPE_CHECKING:
    from store import Store

log = logging.getLogger("quotaflow.metrics")

# Below Prometheus' default scrape timeout (10 s), so a slow database yields database_up 0
# rather than a failed scrape.
SCRAPE_TIMEOUT_SECONDS = 5.0


def _families() -> dict[str, GaugeMetricFamily]:
    return {
        "up": GaugeMetricFamily(
            "quotaflow_database_up",
            "1 when the scrape-time database queries answered, 0 when they failed.",
        ),
        "depth": GaugeMetricFamily(
            "quotaflow_queue_depth",
            "Pending jobs per pool and priority class.",
            labels=["pool", "priority_class"],
        ),
        "capacity": GaugeMetricFamily(
            "quotaflow_pool_capacity",
            "What a pool can run.",
            labels=["pool", "resource"],
        ),
        "in_use": GaugeMetricFamily(
            "quotaflow_pool_in_use",
            "What a pool's admitted, running and preempting jobs and active sagas hold.",
            labels=["pool", "resource"],
        ),
        "sagas": GaugeMetricFamily(
            "quotaflow_preemptions_active",
            "Preemption sagas under way per pool.",
            labels=["pool"],
        ),
    }


class DatabaseCollector(Collector):
    """Registered once per process; bound to the worker's store while the endpoint is up."""

    def __init__(self) -> None:
        self._store: Store | None = None
        self._lock = threading.Lock()

    def bind(self, store: Store | None) -> None:
        with self._lock:
            self._store = store

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Names only, so the registry can refuse a clashing series at registration.
        yield from _families().values()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            store = self._store
        if store is None:
            return
        families = _families()
        try:
            depth, pools, sagas = self._read(store)
        except Exception as exc:
            log.warning("metrics: the database did not answer the scrape: %s", exc)
            families["up"].add_metric([], 0)
            yield families["up"]
            return
        families["up"].add_metric([], 1)
        for row in depth:
            families["depth"].add_metric([row["pool"], row["priority_class"]], row["pending"])
        for row in pools:
            for resource in ("gpu", "cpu"):
                families["capacity"].add_metric(
                    [row["pool"], resource], row[f"{resource}_capacity"]
                )
                families["in_use"].add_metric([row["pool"], resource], row[f"{resource}_in_use"])
        for row in sagas:
            families["sagas"].add_metric([row["pool"]], row["active"])
        yield from families.values()

    @staticmethod
    def _read(store: Store) -> tuple[list[dict[str, Any]], ...]:
        with translated(), store.db.pool.connection(timeout=SCRAPE_TIMEOUT_SECONDS) as conn:
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                (str(int(SCRAPE_TIMEOUT_SECONDS * 1000)),),
            )
            rows = tuple(
                conn.execute(query(name)).fetchall()
                for name in (
                    "metrics_queue_depth",
                    "metrics_pools",
                    "metrics_preemptions_active",
                )
            )
            conn.rollback()  # read-only: nothing to commit
        return rows


DATABASE = DatabaseCollector()
REGISTRY.register(DATABASE)
