"""The daemon's one HTTP app: adapters' routes plus /healthz, /readyz and /metrics."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from connector.ports import Plugin, Runtime
from connector.runtime.metrics import OUTBOX_AGE, OUTBOX_DEPTH, REGISTRY

log = structlog.get_logger("leadsync.server")


def refresh_outbox_metrics(runtime: Runtime) -> None:
    from connector.sync import outbox

    found = outbox.depth(runtime.store)
    OUTBOX_DEPTH.clear()
    OUTBOX_AGE.clear()
    for destination, entry in found.items():
        OUTBOX_DEPTH.labels(destination).set(entry["pending"])
        OUTBOX_AGE.labels(destination).set(entry["oldest_age"])


def build_app(runtime: Runtime, plugins: dict[str, Plugin]) -> Starlette:
    """The daemon's app: every plugin's `routes(runtime)`, mounted as given, then the
    core endpoints. `remount` swaps the routes when the config is reloaded."""

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("not found", status_code=404)

    return Starlette(routes=all_routes(runtime, plugins), exception_handlers={404: not_found})


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
        try:
            refresh_outbox_metrics(runtime)
        except Exception as exc:  # the store is down: serve what we have
            log.warning("metrics.outbox_unavailable", error=type(exc).__name__)
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
