"""The HTTP face of the emulator: the Kubernetes API paths quotaflow uses, and ``/_emulator``.

Handlers parse the request, consult the fault book, then call one synchronous
:class:`~k8s.emulator.state.ClusterState` method; watches stream events from a queue the state
fills. Everything runs on one event loop, so no locks are needed around the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from k8s.emulator import status
from k8s.emulator.faults import Fault, FaultBook
from k8s.emulator.selectors import SelectorError, parse_selector
from k8s.emulator.state import (
    RESOURCES,
    ClusterState,
    Expired,
    TooLarge,
    WatchEvent,
    parse_field_selector,
)

log = logging.getLogger(__name__)

STATE_KEY: web.AppKey[ClusterState] = web.AppKey("state", ClusterState)
FAULTS_KEY: web.AppKey[FaultBook] = web.AppKey("faults", FaultBook)

_SHORT = {"pods": "pods", "poddisruptionbudgets": "pdbs"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, code: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")), status=code, content_type="application/json"
    )


def _error(exc: status.ApiError) -> web.Response:
    return _json(exc.body, exc.code)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise status.bad_request(f"the body of the request could not be decoded: {exc}") from exc


def _grace(request: web.Request, body: Any) -> int | None:
    """gracePeriodSeconds from DeleteOptions in the body, else from the query string."""
    if isinstance(body, dict) and body.get("gracePeriodSeconds") is not None:
        value = body["gracePeriodSeconds"]
    else:
        value = request.query.get("gracePeriodSeconds")
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise status.bad_request(f"invalid gracePeriodSeconds {value!r}") from exc


def _drop(request: web.Request) -> web.StreamResponse:
    # A connection lost before any response: the client sees the server disconnect.
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


class Api:
    """Route handlers bound to one cluster state and one fault book."""

    def __init__(self, state: ClusterState, faults: FaultBook) -> None:
        self.state = state
        self.faults = faults

    def _faulted(
        self, request: web.Request, endpoint: str, name: str | None, verb: str
    ) -> tuple[Fault | None, web.StreamResponse | None]:
        """The fault this request suffers, and the answer that replaces it (if any)."""
        fault = self.faults.take(endpoint, name)
        if fault is None:
            return None, None
        log.info(
            "fault on %s %s: %s", endpoint, name or "", fault.model_dump(exclude_defaults=True)
        )
        if fault.drop and endpoint != "pods.watch":
            return fault, _drop(request)
        if fault.status is not None and not (endpoint == "pods.watch" and fault.status == 410):
            resource = endpoint.split(".")[0]
            plural = "poddisruptionbudgets" if resource == "pdbs" else resource
            if endpoint == "pods.evict":
                plural = "pods/eviction"
            return fault, _error(status.for_code(fault.status, plural, name or "", verb))
        return fault, None

    async def _answer(
        self,
        request: web.Request,
        endpoint: str,
        name: str | None,
        verb: str,
        handle: Callable[[], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        fault, replacement = self._faulted(request, endpoint, name, verb)
        if replacement is not None:
            response = replacement
        else:
            try:
                response = await handle()
            except SelectorError as exc:
                response = _error(status.bad_request(str(exc)))
            except status.ApiError as exc:
                response = _error(exc)
        if fault is not None and fault.delay_seconds:
            # The work is done (a create is stored) but the answer is late, as when an API
            # server commits and the client gives up waiting: the retry must be idempotent.
            await asyncio.sleep(fault.delay_seconds)
        return response

    async def collection(self, request: web.Request) -> web.StreamResponse:
        plural = request.match_info["plural"]
        namespace = request.match_info.get("namespace")
        if request.method == "GET" and request.query.get("watch") in ("true", "1"):
            return await self.watch(request, plural, namespace)
        verb = "list" if request.method == "GET" else "create"

        async def handle() -> web.StreamResponse:
            if request.method == "POST":
                return _json(self.state.create(plural, namespace, await _body(request)), 201)
            selector = parse_selector(request.query.get("labelSelector"))
            fields = parse_field_selector(request.query.get("fieldSelector"))
            return _json(self.state.list_objects(plural, namespace, selector, fields))

        return await self._answer(
            request, f"{_SHORT.get(plural, plural)}.{verb}", None, verb, handle
        )

    async def item(self, request: web.Request) -> web.StreamResponse:
        plural = request.match_info["plural"]
        namespace = request.match_info.get("namespace")
        name = request.match_info["name"]
        verb = {"GET": "get", "DELETE": "delete"}[request.method]

        async def handle() -> web.StreamResponse:
            if request.method == "GET":
                return _json(self.state.get(plural, namespace, name))
            body = await _body(request)
            return _json(self.state.delete(plural, namespace, name, _grace(request, body)))

        return await self._answer(
            request, f"{_SHORT.get(plural, plural)}.{verb}", name, verb, handle
        )

    async def eviction(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        name = request.match_info["name"]

        async def handle() -> web.StreamResponse:
            return _json(self.state.evict(namespace, name, await _body(request)), 201)

        return await self._answer(request, "pods.evict", name, "create", handle)

    async def watch(
        self, request: web.Request, plural: str, namespace: str | None
    ) -> web.StreamResponse:
        fault, response = self._faulted(
            request, f"{_SHORT.get(plural, plural)}.watch", None, "watch"
        )
        if fault is not None and fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        if response is not None:
            return response
        try:
            selector = parse_selector(request.query.get("labelSelector"))
            fields = parse_field_selector(request.query.get("fieldSelector"))
            requested = request.query.get("timeoutSeconds")
            # Like a real server's --min-request-timeout, the server may end a watch first.
            timeout = min(
                float(requested) if requested else math.inf, self.state.config.watch_max_seconds
            )
        except SelectorError as exc:
            return _error(status.bad_request(str(exc)))
        except status.ApiError as exc:
            return _error(exc)
        except ValueError:
            return _error(status.bad_request("invalid timeoutSeconds"))
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        stream = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        stream.enable_chunked_encoding()
        await stream.prepare(request)

        async def send(payload: dict[str, Any]) -> None:
            await stream.write(json.dumps(payload, separators=(",", ":")).encode() + b"\n")

        if fault is not None and fault.status == 410:
            await send({"type": "ERROR", "object": status.expired(0, self.state.revision)})
            return stream
        self.state.watches_served += 1
        try:
            backlog, watcher = self.state.open_watch(
                plural,
                namespace,
                selector,
                fields,
                request.query.get("resourceVersion"),
                queue.put_nowait,
            )
        except (Expired, TooLarge) as exc:
            # A real server answers an unusable resourceVersion with 200 and an ERROR event.
            await send({"type": "ERROR", "object": exc.body})
            return stream
        except status.ApiError as exc:
            await send({"type": "ERROR", "object": exc.body})
            return stream
        drop_after = fault.after_events if fault is not None and fault.drop else None
        sent = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        try:
            for event in backlog:
                queue.put_nowait(event)
            while True:
                if drop_after is not None and sent >= drop_after:
                    if request.transport is not None:
                        request.transport.abort()
                    return stream
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                await send(event.wire())
                sent += 1
            # Drain what arrived with the deadline, then bookmark the revision they lead to.
            pending = []
            while not queue.empty():
                pending.append(queue.get_nowait())
            revision = self.state.revision
            for event in pending:
                await send(event.wire())
            if bookmarks:
                resource = RESOURCES[plural]
                await send(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": resource.kind,
                            "apiVersion": resource.api_version,
                            "metadata": {"resourceVersion": str(revision)},
                        },
                    }
                )
        except ConnectionResetError:
            return stream  # the client went away: nothing more to send
        finally:
            self.state.close_watch(watcher)
        with contextlib.suppress(ConnectionResetError):
            await stream.write_eof()
        return stream

    # --- admin -------------------------------------------------------------------------

    async def admin_faults(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            try:
                fault = Fault.model_validate(await _body(request) or {})
            except ValidationError as exc:
                return _json({"error": exc.errors(include_url=False, include_context=False)}, 422)
            except status.ApiError as exc:
                return _error(exc)
            self.faults.add(fault)
            return _json(fault.model_dump(), 201)
        if request.method == "DELETE":
            self.faults.clear()
        return _json({"faults": [f.model_dump() for f in self.faults.pending()]})

    async def admin_state(self, request: web.Request) -> web.StreamResponse:
        return _json(
            self.state.summary() | {"faults": [f.model_dump() for f in self.faults.pending()]}
        )

    async def admin_compact(self, request: web.Request) -> web.StreamResponse:
        return _json({"oldestWatchableResourceVersion": str(self.state.compact())})

    async def admin_end_pod(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await _body(request) or {}
            pod = self.state.end_pod(
                request.match_info["namespace"],
                request.match_info["name"],
                str(body.get("phase", "Failed")),
                str(body.get("message", "")),
            )
        except status.ApiError as exc:
            return _error(exc)
        return _json(pod)

    # --- discovery ---------------------------------------------------------------------

    async def version(self, request: web.Request) -> web.StreamResponse:
        return _json(
            {
                "major": "1",
                "minor": "33",
                "gitVersion": "v1.33.0-quotaflow-emulator",
                "platform": "linux/amd64",
            }
        )

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def core_versions(self, request: web.Request) -> web.StreamResponse:
        return _json({"kind": "APIVersions", "versions": ["v1"]})

    async def core_resources(self, request: web.Request) -> web.StreamResponse:
        verbs = ["create", "delete", "get", "list", "watch"]
        return _json(
            {
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [
                    {
                        "name": "pods",
                        "singularName": "pod",
                        "namespaced": True,
                        "kind": "Pod",
                        "verbs": verbs,
                    },
                    {
                        "name": "pods/eviction",
                        "singularName": "",
                        "namespaced": True,
                        "group": "policy",
                        "version": "v1",
                        "kind": "Eviction",
                        "verbs": ["create"],
                    },
                ],
            }
        )

    async def groups(self, request: web.Request) -> web.StreamResponse:
        def group(name: str) -> dict[str, Any]:
            version = {"groupVersion": f"{name}/v1", "version": "v1"}
            return {"name": name, "versions": [version], "preferredVersion": version}

        return _json(
            {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [group("policy"), group("scheduling.k8s.io")],
            }
        )

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        return _error(status.path_not_found())

    async def not_allowed(self, request: web.Request) -> web.StreamResponse:
        return _error(status.method_not_allowed())


def build_app(state: ClusterState, faults: FaultBook) -> web.Application:
    api = Api(state, faults)
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE_KEY] = state
    app[FAULTS_KEY] = faults
    core = "/api/v1/namespaces/{namespace}/{plural:pods}"
    policy = "/apis/policy/v1/namespaces/{namespace}/{plural:poddisruptionbudgets}"
    scheduling = "/apis/scheduling.k8s.io/v1/{plural:priorityclasses}"
    routes = [
        web.get("/version", api.version),
        web.get("/healthz", api.healthz),
        web.get("/readyz", api.healthz),
        web.get("/livez", api.healthz),
        web.get("/api", api.core_versions),
        web.get("/api/v1", api.core_resources),
        web.get("/apis", api.groups),
        web.post(f"{core}/{{name}}/eviction", api.eviction),
        web.post("/_emulator/faults", api.admin_faults),
        web.get("/_emulator/faults", api.admin_faults),
        web.delete("/_emulator/faults", api.admin_faults),
        web.get("/_emulator/state", api.admin_state),
        web.post("/_emulator/compact", api.admin_compact),
        web.post("/_emulator/pods/{namespace}/{name}/end", api.admin_end_pod),
    ]
    for collection in (core, policy, scheduling):
        routes += [
            web.get(collection, api.collection, allow_head=False),
            web.post(collection, api.collection),
            web.get(f"{collection}/{{name}}", api.item, allow_head=False),
            web.delete(f"{collection}/{{name}}", api.item),
            web.put(f"{collection}/{{name}}", api.not_allowed),
            web.patch(f"{collection}/{{name}}", api.not_allowed),
        ]
    app.add_routes(routes)
    app.router.add_route("*", "/{tail:.*}", api.not_found)
    return app
