"""The daemon's one HTTP app: adapters' routes plus /healthz, /readyz and /metrics.

Every request body is capped (`server.max_body`, per path `server.route_max_body`)
by `BodyLimit` before any route reads it: a declared Content-Length above the cap is
answered 413 without reading a byte, and a chunked body is counted as it streams and
refused as soon as it passes the cap. A route's handler never holds more than the cap
in memory, whatever a client sends (a signature check needs the whole body, so without
the cap a forged 150 MB POST was read whole before it was refused).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connector.ports import Plugin, Runtime
from connector.runtime.metrics import (
    FORGED_UNLOGGED,
    OUTBOX_AGE,
    OUTBOX_DEPTH,
    OUTBOX_ROWS,
    REGISTRY,
    WEBHOOK_DELIVERIES,
)

log = structlog.get_logger("leadsync.server")

DEFAULT_MAX_BODY = 1 << 20


def refresh_outbox_metrics(runtime: Runtime) -> None:
    """Outbox gauges, from one read of the outbox: depth and oldest age per
    destination, and rows by state (pending, dead)."""
    from connector.sync import outbox

    found = outbox.depth(runtime.store)
    OUTBOX_DEPTH.clear()
    OUTBOX_AGE.clear()
    for destination, entry in found.items():
        OUTBOX_DEPTH.labels(destination).set(entry["pending"])
        OUTBOX_AGE.labels(destination).set(entry["oldest_age"])
    OUTBOX_ROWS.clear()
    for destination, states in outbox_backlog(runtime, found).items():
        for state, n in states.items():
            OUTBOX_ROWS.labels(destination, state).set(n)


def refresh_backlog_metrics(runtime: Runtime) -> None:
    """Gauges of webhook deliveries, pending and dead-lettered."""
    from connector.runtime import inbox

    WEBHOOK_DELIVERIES.clear()
    for source, entry in inbox.counts(runtime.store).items():
        for state, n in entry.items():
            WEBHOOK_DELIVERIES.labels(source, state).set(n)


def outbox_backlog(
    runtime: Runtime, found: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, int]]:
    """Per destination: outbox rows pending and dead letters (not dismissed), from
    `found` (what `outbox.depth` read) or a read of its own."""
    from connector.sync import outbox

    if found is None:
        found = outbox.depth(runtime.store)
    return {
        destination: {"pending": entry["pending"], "dead": entry["failed"]}
        for destination, entry in found.items()
    }


class BodyTooLarge(Exception):
    """A request body passed its route's cap while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


def _too_large(limit: int) -> Response:
    return PlainTextResponse(f"request body larger than {limit} bytes", status_code=413)


class BodyLimit:
    """ASGI middleware capping request bodies (see the module's docstring). `limit`
    gives the cap for a path; it is asked per request, so a reload's new limits apply
    at once."""

    def __init__(self, app: ASGIApp, limit: Callable[[str], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(str(scope.get("path", "")))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def body_limit(runtime: Runtime) -> Callable[[str], int]:
    """The body cap of a path under the runtime's current config."""

    def limit(path: str) -> int:
        server = getattr(runtime.config, "server", None)
        per_route: dict[str, int] = getattr(server, "route_max_body", None) or {}
        return int(per_route.get(path, getattr(server, "max_body", DEFAULT_MAX_BODY)))

    return limit


class RateLimitedWarning:
    """A warning logged at most once per `every` seconds per route; the ones not logged
    are counted (leadsync_forged_requests_unlogged) and reported by the next line. A
    flood of forged requests cannot flood the log."""

    def __init__(
        self, event: str, every: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.event = event
        self.every = every
        self.clock = clock
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, route: str, **fields: Any) -> bool:
        """Log (True) or count (False) one occurrence on `route`."""
        now = self.clock()
        with self._lock:
            last = self._last.get(route)
            if last is not None and now - last < self.every:
                self._unlogged[route] = self._unlogged.get(route, 0) + 1
                FORGED_UNLOGGED.labels(route).inc()
                return False
            self._last[route] = now
            unlogged = self._unlogged.pop(route, 0)
        log.warning(self.event, route=route, unlogged_since_last=unlogged, **fields)
        return True


def build_app(runtime: Runtime, plugins: dict[str, Plugin]) -> Starlette:
    """The daemon's app: every plugin's `routes(runtime)`, mounted as given, then the
    core endpoints. `remount` swaps the routes when the config is reloaded."""

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("not found", status_code=404)

    async def too_large(request: Request, exc: Exception) -> Response:
        return _too_large(exc.limit if isinstance(exc, BodyTooLarge) else DEFAULT_MAX_BODY)

    return Starlette(
        routes=all_routes(runtime, plugins),
        middleware=[Middleware(BodyLimit, limit=body_limit(runtime))],
        exception_handlers={404: not_found, BodyTooLarge: too_large},
    )


def remount(app: Starlette, routes: list[BaseRoute]) -> None:
    """Serve `routes` from now on (after a reload: a webhook's secret or path changed).
    One attribute assignment, so a request in flight sees the old list or the new."""
    app.router.routes = routes


def all_routes(runtime: Runtime, plugins: dict[str, Plugin]) -> list[BaseRoute]:
    """Plugins' routes (built from the current config) and the core endpoints."""

    def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive", "replica": runtime.replica})

    def readyz(request: Request) -> Response:
        try:
            current = runtime.store.is_current()
        except Exception as exc:
            return JSONResponse(
                {"status": "not ready", "reason": f"store unreachable: {type(exc).__name__}"},
                status_code=503,
            )
        if not current:
            return JSONResponse(
                {
                    "status": "not ready",
                    "reason": "store migrations are not current: run `leadsync db upgrade`",
                },
                status_code=503,
            )
        return JSONResponse({"status": "ready"})

    def metrics(request: Request) -> Response:
        for refresh in (refresh_outbox_metrics, refresh_backlog_metrics):
            try:
                refresh(runtime)
            except Exception as exc:  # the store is down: serve what we have
                log.warning("metrics.store_unavailable", error=type(exc).__name__)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = []
    for name, plugin in sorted(plugins.items()):
        contribute = getattr(plugin, "routes", None)
        if contribute is None:
            continue
        given: Sequence[BaseRoute] = contribute(runtime)
        routes.extend(given)
        if given:
            log.info("server.routes", plugin=name, count=len(given))
    return [
        *routes,
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
