"""quotaflow's own Prometheus series, and the calls activities make to move them.

Every series lives in prometheus_client's default registry, so the process and GC collectors
come with them. The activities run on a thread pool; prometheus_client's metrics are
thread-safe. Recording must never fail or slow down scheduling: the observers that read the
database do nothing until :func:`set_observing` is on (worker.py turns it on with the metrics
endpoint), and they swallow and log their own errors.

Activities can be retried after they committed. The observers that could see the same event
twice (a saga's end, an admission by a saga) remember the last few thousand events they
recorded, so a retry in the same process is not counted again; a retry on another worker
process (after a crash) may be. Counters here are therefore exact per process except for such
crashes, which Temporal makes rare.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec
from uuid import UUID

from prometheus_client import Counter, Histogram
from psycopg import sql
from temporalio.exceptions import ApplicationError

from domain.models import JobStatus
from store.queries import parse_queries

if TYPE_CHECKING:
    from store import Store

log = logging.getLogger("quotaflow.metrics")
P = ParamSpec("P")

QUERIES_FILE = Path(__file__).with_name("queries.sql")
QUERIES: dict[str, str] = parse_queries(QUERIES_FILE.read_text(), QUERIES_FILE.name)


def query(name: str) -> sql.SQL:
    return sql.SQL(QUERIES[name])


# Waits range from milliseconds (an idle pool) to days (a project over quota all week).
ADMISSION_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400,
    259200, 604800,
)  # fmt: skip
# A saga takes one eviction round (seconds) up to QF_EVICTION_DEADLINE_SECONDS (2 min default)
# when a disruption budget holds it back.
SAGA_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)

ADMISSION_LATENCY = Histogram(
    "quotaflow_admission_latency_seconds",
    "Time from a job's last entry into PENDING (submission or requeue) to its admission.",
    ["pool", "priority_class", "via"],
    buckets=ADMISSION_BUCKETS,
)
EVICTIONS = Counter(
    "quotaflow_evictions",
    "Eviction requests (policy/v1) by outcome; a request retried by the saga counts each time.",
    ["outcome"],
)
SAGAS = Counter(
    "quotaflow_preemption_sagas",
    "Preemption sagas that ended, by outcome.",
    ["outcome"],
)
SAGA_DURATION = Histogram(
    "quotaflow_preemption_saga_duration_seconds",
    "Time from a saga's reservation of its victims to its end (completed or compensated).",
    ["outcome"],
    buckets=SAGA_BUCKETS,
)
JOB_ENDINGS = Counter(
    "quotaflow_job_endings",
    "Jobs that reached a final status, by pool and status.",
    ["pool", "status"],
)

EVICTION_OUTCOMES = ("evicted", "already_gone", "blocked", "forbidden", "failed")
SAGA_OUTCOMES = ("completed", "compensated", "not_started")
# The ApplicationError types evict_pod raises (activities/preemption.py) → outcome.
_EVICTION_FAILURES = {"EvictionBlocked": "blocked", "KubeForbidden": "forbidden"}

# Every known label value from the start: a rate() over a series that appears late misses its
# first increments.
for _outcome in EVICTION_OUTCOMES:
    EVICTIONS.labels(_outcome)
for _outcome in SAGA_OUTCOMES:
    SAGAS.labels(_outcome)
for _outcome in SAGA_OUTCOMES[:2]:
    SAGA_DURATION.labels(_outcome)


class _Seen:
    """A bounded memory of recorded events, so a retried activity is not counted twice."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._keys: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: Hashable) -> bool:
        with self._lock:
            if key in self._keys:
                return False
            self._keys[key] = None
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)
            return True


_seen_admissions = _Seen()
_seen_sagas = _Seen()
_observing = threading.Event()


def set_observing(on: bool) -> None:
    """Turn the observers that read the database on (the endpoint is up) or off."""
    if on:
        _observing.set()
    else:
        _observing.clear()


def observing() -> bool:
    return _observing.is_set()


def _quietly(fn: Callable[P, None]) -> Callable[P, None]:
    """Metrics never fail an activity: a failed observation is logged and dropped."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        if not observing():
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            log.warning("metrics: %s failed: %s", fn.__name__, exc)

    return run


# --- admissions -------------------------------------------------------------------------


@_quietly
def observe_admissions(store: Store, job_ids: Iterable[UUID], *, via: str) -> None:
    """Record how long the jobs just admitted waited (``via``: ``claim`` or ``preemption``)."""
    ids = list(job_ids)
    if not ids:
        return
    with store.db.connection() as conn:
        rows = conn.execute(query("metrics_admission_waits"), {"job_ids": ids}).fetchall()
    for row in rows:
        if _seen_admissions.first_time((row["id"], row["attempt"])):
            ADMISSION_LATENCY.labels(row["pool"], row["priority_class"], via).observe(
                max(row["waited_seconds"], 0.0)
            )


# --- preemption -------------------------------------------------------------------------


def counts_evictions(fn: Callable[P, str]) -> Callable[P, str]:
    """Count each eviction request by outcome; for the ``evict_pod`` activity.

    It wraps the activity below ``@activity.defn`` and above ``@translated``, so it sees the
    outcome string (``evicted`` / ``already_gone``) or the ApplicationError the activity raises.
    """

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> str:
        try:
            outcome = fn(*args, **kwargs)
        except ApplicationError as exc:
            EVICTIONS.labels(_EVICTION_FAILURES.get(exc.type or "", "failed")).inc()
            raise
        except Exception:
            EVICTIONS.labels("failed").inc()
            raise
        EVICTIONS.labels(outcome).inc()
        return outcome

    return run


def observe_saga_not_started() -> None:
    """The saga found nothing to reserve (the job fits now, is not eligible, or victims lack)."""
    SAGAS.labels("not_started").inc()


@_quietly
def observe_saga_end(store: Store, preemptor_id: UUID) -> None:
    """Record the preemptor's latest saga if it has ended: its outcome and its duration."""
    with store.db.connection() as conn:
        row = conn.execute(query("metrics_saga_latest"), {"preemptor_id": preemptor_id}).fetchone()
    if row is None or row["status"] == "ACTIVE" or not _seen_sagas.first_time(row["id"]):
        return
    outcome = str(row["status"]).lower()  # COMPLETED / COMPENSATED
    SAGAS.labels(outcome).inc()
    SAGA_DURATION.labels(outcome).observe(max(row["seconds"], 0.0))


def observe_preemptor_admitted(store: Store, preemptor_id: UUID) -> None:
    """A saga admitted its preemptor: the admission's wait and the saga's end."""
    observe_admissions(store, [preemptor_id], via="preemption")
    observe_saga_end(store, preemptor_id)


# --- endings ----------------------------------------------------------------------------


def job_ended(pool: str, status: JobStatus | str) -> None:
    """A job reached SUCCEEDED, FAILED or CANCELLED (called once the transition committed)."""
    JOB_ENDINGS.labels(pool, str(status)).inc()
