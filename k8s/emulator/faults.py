"""Fault injection: make the next N calls to an endpoint fail, stall or lose their connection."""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import BaseModel, Field, model_validator

Endpoint = Literal[
    "pods.create",
    "pods.get",
    "pods.list",
    "pods.watch",
    "pods.delete",
    "pods.evict",
    "pdbs.create",
    "pdbs.get",
    "pdbs.list",
    "pdbs.delete",
]


class Fault(BaseModel):
    """What the next ``times`` matching requests suffer.

    - ``delay_seconds``: the request is handled at once but answered this late (an API server
      that committed, then was slow to say so: a client that gave up must retry idempotently);
      a watch starts streaming this late;
    - ``status``: answer with a real-looking ``Status`` body of that code (500, 503, 403, 401,
      429, …) instead of handling the request; on ``pods.watch`` a 410 is sent the way a real
      server sends it, as an ``ERROR`` event inside a 200 stream;
    - ``drop``: close the connection without a complete response; on ``pods.watch`` after
      ``after_events`` events have been streamed (a connection lost mid-watch).
    """

    endpoint: Endpoint
    status: int | None = Field(default=None, ge=400, le=599)
    delay_seconds: float = Field(default=0.0, ge=0, le=600)
    drop: bool = False
    after_events: int = Field(default=0, ge=0)
    times: int = Field(default=1, ge=1)
    name: str | None = Field(default=None, description="Only requests about this object.")

    @model_validator(mode="after")
    def _does_something(self) -> Fault:
        if self.status is None and not self.drop and self.delay_seconds == 0:
            raise ValueError("a fault needs a status, a delay or drop=true")
        if self.status is not None and self.drop:
            raise ValueError("a fault either answers with a status or drops, not both")
        return self


class FaultBook:
    """The pending faults; consulted by every API request, changed from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, endpoint: str, name: str | None) -> Fault | None:
        """The first fault for this request, counted as used."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.endpoint != endpoint or (fault.name is not None and fault.name != name):
                    continue
                if fault.times > 1:
                    self._faults[index] = fault.model_copy(update={"times": fault.times - 1})
                else:
                    del self._faults[index]
                return fault
        return None
