"""Run the emulator in a background thread (:class:`EmulatorServer`) or drive one elsewhere
over HTTP (:class:`EmulatorAdmin`). Both offer the same test-facing methods."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from k8s.emulator.app import build_app
from k8s.emulator.faults import Endpoint, Fault, FaultBook
from k8s.emulator.state import ClusterState, EmulatorConfig, Timer

log = logging.getLogger(__name__)

T = TypeVar("T")


class _FaultControls:
    def add_fault(self, fault: Fault) -> Fault:
        raise NotImplementedError

    def inject_fault(
        self,
        endpoint: Endpoint,
        *,
        status: int | None = None,
        delay_seconds: float = 0.0,
        drop: bool = False,
        after_events: int = 0,
        times: int = 1,
        name: str | None = None,
    ) -> Fault:
        """Make the next ``times`` calls to ``endpoint`` fail, stall or drop (see ``Fault``)."""
        return self.add_fault(
            Fault(
                endpoint=endpoint,
                status=status,
                delay_seconds=delay_seconds,
                drop=drop,
                after_events=after_events,
                times=times,
                name=name,
            )
        )


class EmulatorServer(_FaultControls):
    """An in-memory Kubernetes API server on ``host:port`` (port 0 = a free one).

    ::

        with EmulatorServer() as emulator:
            client = KubeClient(ApiClient(emulator_configuration(emulator.url)), "quotaflow")
            emulator.inject_fault("pods.evict", status=500, times=2)

    The server runs its own event loop in a daemon thread, so it serves synchronous code
    (the official client) and asyncio code (another loop) alike. The test helpers below are
    thread-safe: they run on the server's loop and wait for the result.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, config: EmulatorConfig | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.config = config or EmulatorConfig()
        self.faults = FaultBook()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state: ClusterState | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"kube-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout)
        except BaseException:
            # The thread ends by itself when the start failed.
            self._thread.join(timeout)
            self._thread = None
            raise
        log.info("kube emulator listening on %s", self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._loop is None or self._stopped is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # report a failed start to start(), never lose it
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.exception("kube emulator crashed")
        finally:
            loop.close()

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()

        def call_later(delay: float, callback: Callable[[], None]) -> Timer:
            return loop.call_later(delay, callback)

        self._state = ClusterState(call_later, self.config)
        app = build_app(self._state, self.faults)
        # handler_cancellation ends a watch handler as soon as its client disconnects.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        ready.set_result(None)
        try:
            await self._stopped.wait()
        finally:
            await runner.cleanup()

    def _call(self, fn: Callable[[ClusterState], T]) -> T:
        """Run ``fn`` on the server's loop, where the state lives, and return its result."""
        loop, state = self._loop, self._state
        if loop is None or state is None or self._thread is None:
            raise RuntimeError("the emulator is not running")
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(fn(state))
            except BaseException as exc:
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return result.result(timeout=10)

    # --- test helpers (same names on EmulatorAdmin) ------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        self.faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def pending_faults(self) -> list[Fault]:
        return self.faults.pending()

    def state(self) -> dict[str, Any]:
        """What ``GET /_emulator/state`` returns: revision, pods, budgets, faults."""
        summary = self._call(lambda s: s.summary())
        return summary | {"faults": [f.model_dump() for f in self.faults.pending()]}

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Full pod objects (copies), as the API would return them."""
        return self._call(lambda s: s.objects("pods", namespace))

    def pod(self, name: str, namespace: str = "quotaflow") -> dict[str, Any] | None:
        return next((p for p in self.pods(namespace) if p["metadata"]["name"] == name), None)

    def end_pod(
        self, name: str, namespace: str = "quotaflow", phase: str = "Failed", message: str = ""
    ) -> dict[str, Any]:
        """Make a pod's workload end now (a crash, an OOM kill)."""
        return self._call(lambda s: s.end_pod(namespace, name, phase, message))

    def compact(self) -> int:
        """Drop the watch history: a watch from an older resourceVersion gets 410 Gone."""
        return self._call(lambda s: s.compact())

    @property
    def resource_version(self) -> int:
        return self._call(lambda s: s.revision)

    @property
    def watcher_count(self) -> int:
        return self._call(lambda s: s.watcher_count)


class EmulatorAdmin(_FaultControls):
    """The test helpers of :class:`EmulatorServer`, for an emulator in another process."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode()}") from exc

    def add_fault(self, fault: Fault) -> Fault:
        return Fault.model_validate(self._request("POST", "/_emulator/faults", fault.model_dump()))

    def clear_faults(self) -> None:
        self._request("DELETE", "/_emulator/faults")

    def pending_faults(self) -> list[Fault]:
        return [
            Fault.model_validate(f) for f in self._request("GET", "/_emulator/faults")["faults"]
        ]

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/_emulator/state")
        return result

    def end_pod(
        self, name: str, namespace: str = "quotaflow", phase: str = "Failed", message: str = ""
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/_emulator/pods/{namespace}/{name}/end", {"phase": phase, "message": message}
        )
        return result

    def compact(self) -> int:
        return int(self._request("POST", "/_emulator/compact")["oldestWatchableResourceVersion"])
