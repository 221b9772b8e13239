"""The metrics endpoints of a worker process (``QF_METRICS_PORT``; unset: none).

* ``QF_METRICS_PORT``: quotaflow's series (``quotaflow_*``, observability/metrics.py and
  collector.py) plus prometheus_client's process and GC collectors, served by
  prometheus_client from a thread.
* ``QF_METRICS_PORT + 1``: the Temporal SDK's own series (``temporal_*``), served by its Rust
  core. They stay on their own port rather than being copied into ours: the core exports them
  natively, with its own histograms, and translating them (``MetricBuffer``) would mean a
  polling loop and guessed buckets. The worker's Temporal client must be connected with the
  returned :class:`Runtime`, or the core reports nothing.

Both listen on every interface: a Prometheus in the cluster must reach a worker pod. A port
already taken fails the worker at start, naming the port: each worker process on one host needs
its own ``QF_METRICS_PORT``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, start_http_server
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from observability.collector import DATABASE
from observability.metrics import set_observing
from settings import Settings

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from store import Store

DEFAULT_HOST = "0.0.0.0"


def temporal_metrics_port(metrics_port: int) -> int:
    """Where the Temporal SDK's metrics go: the port after ours."""
    if metrics_port >= 65535:
        raise ValueError(
            f"QF_METRICS_PORT={metrics_port}: the Temporal SDK's metrics need the next port too"
        )
    return metrics_port + 1


def temporal_runtime(settings: Settings, *, host: str = DEFAULT_HOST) -> Runtime | None:
    """A Temporal runtime exporting the SDK's metrics, or None when metrics are off.

    Make it once per process, before connecting the worker's client with it (it binds its port
    for the life of the process).
    """
    if settings.metrics_port is None:
        return None
    port = temporal_metrics_port(settings.metrics_port)
    try:
        return Runtime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}"))
        )
    except ValueError as exc:
        raise RuntimeError(
            f"the Temporal SDK's metrics cannot listen on {host}:{port} "
            f"(QF_METRICS_PORT + 1): {exc}"
        ) from exc


@dataclass
class MetricsServer:
    """quotaflow's endpoint; :meth:`close` stops it and the database observers."""

    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def close(self) -> None:
        set_observing(False)
        DATABASE.bind(None)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def start_metrics_server(
    port: int, store: Store | None = None, *, host: str = DEFAULT_HOST
) -> MetricsServer:
    """Serve quotaflow's metrics on ``port``; with a store, also the database gauges."""
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise RuntimeError(f"metrics cannot listen on {host}:{port}: {exc}") from exc
    DATABASE.bind(store)
    set_observing(True)
    return MetricsServer(port, server, thread)


def serve_metrics(
    settings: Settings, store: Store, *, host: str = DEFAULT_HOST
) -> MetricsServer | None:
    """worker.py's call: the endpoint on ``QF_METRICS_PORT``, or None when it is unset."""
    if settings.metrics_port is None:
        return None
    return start_metrics_server(settings.metrics_port, store, host=host)
