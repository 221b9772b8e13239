"""A metrics endpoint started in this process, and a scraper that reads it like Prometheus.

The stack fixtures (a dev server, the emulator, a per-test worker) come from tests/stack.py.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from devstack.postgres import free_port
from observability.server import MetricsServer, start_metrics_server
from store import Store

SCRAPE_TIMEOUT = 30.0  # a shared 2-core machine can be slow to answer


@dataclass(frozen=True)
class Scrape:
    """One scrape, parsed with prometheus_client's own parser."""

    samples: list[Sample]

    def find(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum over the matching series (0 when none matches)."""
        return sum(s.value for s in self.find(name, **labels))

    def has(self, name: str, **labels: str) -> bool:
        return bool(self.find(name, **labels))


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as answer:
        text = answer.read().decode()
    return Scrape([s for family in text_string_to_metric_families(text) for s in family.samples])


def free_port_pair() -> int:
    """A port whose successor is free too (ours and the Temporal SDK's)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
def metrics(store: Store) -> Iterator[MetricsServer]:
    """quotaflow's endpoint on a free port, reading the test's database."""
    server = start_metrics_server(free_port(), store, host="127.0.0.1")
    yield server
    server.close()
