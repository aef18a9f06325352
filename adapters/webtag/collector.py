"""The collector: the daemon's route the snippet posts batches to.

In order, before anything is stored: bots are dropped (204, counted), the client IP's
rate is checked (429), the site key and the request's Origin must match a configured
site (403, and no CORS headers for an origin that is not allowed), the body must fit
(413) and be a batch the snippet would send (400, counted: `leadsync_webtag_requests`
with outcome `malformed`). Then page views are written through the store's
`VisitWriter` (group commit) and identifies go to the webhook inbox, where the
`webtag.identify` job ingests them as leads; the request is answered once both are
committed, so an acknowledged event is never lost, and the snippet's retry of a batch
it did not see acknowledged is stored once (event ids).

Preflight (OPTIONS) is answered for allowed origins. The snippet sends `text/plain`
(a CORS-safelisted type, so browsers send no preflight and `sendBeacon` works); the
body is parsed as JSON whatever the declared type.
"""

from __future__ import annotations

import asyncio
import functools
import re
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import orjson
import structlog
from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from adapters.webtag import asgi
from adapters.webtag.config import SiteConfig, WebtagConfig
from adapters.webtag.events import Batch, IdentifyEvent, Malformed, PageViewEvent, moment, parse
from adapters.webtag.fbparams import click_ids
from adapters.webtag.limits import RateLimiter
from connector.sdk import REGISTRY, Runtime, inbox, visit_writer, visitors

log = structlog.get_logger(__name__)

IDENTIFY_JOB = "webtag.identify"

REQUESTS = Counter(
    "leadsync_webtag_requests",
    "Requests to the web tag collector, by site and outcome (accepted, malformed, "
    "forbidden, too_large, rate_limited, bot). The site is `?` until the key is known.",
    ["site", "outcome"],
    registry=REGISTRY,
)
EVENTS = Counter(
    "leadsync_webtag_events",
    "Events accepted by the collector, by site and kind (page_view, identify, duplicate).",
    ["site", "kind"],
    registry=REGISTRY,
)

# Requests per transaction of the page-view writer (written / transactions): at a low
# rate every request gets a transaction of its own, which costs it several times the
# CPU of one in a shared transaction (BENCHMARKS.md, web tag).
WRITE_TRANSACTIONS = Gauge(
    "leadsync_webtag_write_transactions",
    "Transactions the page-view writer committed since the daemon started.",
    registry=REGISTRY,
)
WRITTEN_REQUESTS = Gauge(
    "leadsync_webtag_written_requests",
    "Collector requests whose page views those transactions held.",
    registry=REGISTRY,
)


def snippet_source() -> bytes:
    """snippet.js as shipped with the adapter."""
    return files("adapters.webtag").joinpath("snippet.js").read_bytes()


class Collector:
    """The collector for one config (built again on reload)."""

    def __init__(self, runtime: Runtime, config: WebtagConfig) -> None:
        self.runtime = runtime
        self.config = config
        writer = visit_writer.writer(runtime.store)
        WRITE_TRANSACTIONS.set_function(lambda: writer.transactions)
        WRITTEN_REQUESTS.set_function(lambda: writer.items)
        self.sites = config.site_by_key()
        self.origins = {o.rstrip("/") for s in config.sites for o in s.allowed_origins}
        self.bots = re.compile(config.bot_pattern, re.IGNORECASE)
        self.limiter = RateLimiter(config.rate_per_ip, config.burst_per_ip)
        self._snippet = snippet_source()
        self._ip_header = (config.client_ip_header or "").lower().encode() or None
        self._wanted = [b"origin", b"user-agent", b"content-length"]
        if self._ip_header:
            self._wanted.append(self._ip_header)
        # Per allowed origin, the CORS headers of its answers, made once.
        self._cors_raw: dict[str, asgi.RawHeaders] = {
            origin: [(k.encode(), v.encode()) for k, v in self._cors(origin).items()]
            for origin in self.origins
        }
        self._allowed = {s.key: {o.rstrip("/") for o in s.allowed_origins} for s in config.sites}

    def routes(self) -> list[Route]:
        path = self.config.path
        return [
            # A bare ASGI endpoint (an object, not a function: starlette hands it the
            # scope as it is), see adapters/webtag/asgi.py.
            Route(path, _Endpoint(self), methods=["POST"]),
            Route(path, self.preflight, methods=["OPTIONS"]),
            Route(path.rstrip("/") + "/snippet.js", self.script, methods=["GET"]),
        ]

    # -- CORS --------------------------------------------------------------------------

    def _cors(self, origin: str | None) -> dict[str, str]:
        if origin is None or origin.rstrip("/") not in self.origins:
            return {}
        # The exact origin, with credentials allowed: sendBeacon always sends in
        # credentials mode `include`, which refuses a `*`.
        return {
            "access-control-allow-origin": origin,
            "access-control-allow-credentials": "true",
            "vary": "Origin",
        }

    async def preflight(self, request: Request) -> Response:
        headers = self._cors(request.headers.get("origin"))
        if not headers:
            return PlainTextResponse("origin not allowed", status_code=403)
        headers.update(
            {
                "access-control-allow-methods": "POST, OPTIONS",
                "access-control-allow-headers": "content-type",
                "access-control-max-age": "86400",
            }
        )
        return Response(status_code=204, headers=headers)

    async def script(self, request: Request) -> Response:
        return Response(
            self._snippet,
            media_type="application/javascript",
            headers={"cache-control": "public, max-age=3600"},
        )

    # -- events ------------------------------------------------------------------------

    async def _refuse(
        self,
        send: asgi.Send,
        site: str,
        outcome: str,
        status: int,
        why: str,
        cors: asgi.RawHeaders,
    ) -> None:
        REQUESTS.labels(site, outcome).inc()
        await asgi.answer(send, status, why.encode(), [asgi.TEXT, *cors])

    async def collect(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        """POST of a batch: checked in the order the module's docstring gives, then
        stored, then answered."""
        headers = asgi.headers_of(scope, self._wanted)
        raw_origin = headers.get(b"origin")
        origin = raw_origin.decode("latin-1") if raw_origin is not None else None
        cors = self._cors_raw.get(origin) if origin is not None else None
        if cors is None:  # not allowed ([]), or allowed but spelled with a trailing slash
            cors = [(k.encode(), v.encode()) for k, v in self._cors(origin).items()]
        agent = headers.get(b"user-agent", b"").decode("latin-1")
        if not agent or self.bots.search(agent):
            REQUESTS.labels("?", "bot").inc()
            await asgi.answer(send, 204, b"", cors)
            return
        if not self.limiter.allow(self._client_ip(scope, headers)):
            return await self._refuse(send, "?", "rate_limited", 429, "too many requests", cors)
        if not cors:
            return await self._refuse(send, "?", "forbidden", 403, "origin not allowed", cors)
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.config.max_body:
            return await self._refuse(send, "?", "too_large", 413, "body too large", cors)
        body = await asgi.read_body(receive, self.config.max_body)
        if body is None:
            return await self._refuse(send, "?", "too_large", 413, "body too large", cors)
        try:
            batch = parse(body, self.config.max_events)
        except Malformed as exc:
            why = f"malformed batch: {exc}"
            return await self._refuse(send, "?", "malformed", 400, why, cors)
        site = self.sites.get(batch.site)
        if site is None:
            return await self._refuse(send, "?", "forbidden", 403, "unknown site key", cors)
        assert origin is not None  # cors is empty without one
        if origin.rstrip("/") not in self._allowed[batch.site]:
            return await self._refuse(send, site.name, "forbidden", 403, "origin not allowed", cors)
        stored = await self._store(site, batch)
        _accepted(site.name).inc()
        await asgi.answer(send, 200, b'{"accepted":%d}' % stored, [asgi.JSON, *cors])

    def _client_ip(self, scope: asgi.Scope, headers: dict[bytes, bytes]) -> str:
        """The client's address: the proxy's header (its first address) when configured."""
        if self._ip_header:
            given = headers.get(self._ip_header)
            if given:
                return given.decode("latin-1").split(",", 1)[0].strip()[:64]
        client = scope.get("client")
        return str(client[0]) if client else "?"

    async def _store(self, site: SiteConfig, batch: Batch) -> int:
        received = datetime.now(UTC)
        views = [
            _page_view(site, batch.visitor, e, received, self.config.source)
            for e in batch.events
            if isinstance(e, PageViewEvent)
        ]
        identifies = [e for e in batch.events if isinstance(e, IdentifyEvent)]
        new_views = 0
        if not identifies:  # the common request: page views only, one future to wait on
            new_views = await visit_writer.writer(self.runtime.store).write(views)
            _counted(site.name, len(views), new_views)
            return new_views
        waits: list[Any] = []
        if views:
            waits.append(visit_writer.writer(self.runtime.store).write(views))
        box = inbox.writer(self.runtime.store)
        for event in identifies:
            body = orjson.dumps(
                {
                    "site": site.name,
                    "visitor": batch.visitor,
                    "id": event.id,
                    "at": moment(event.at, received).isoformat(),
                    "url": event.url,
                    "traits": event.traits.model_dump(exclude_none=True),
                }
            )
            waits.append(asyncio.wrap_future(box.submit(self.config.source, body)))
        results = await asyncio.gather(*waits)
        if views:
            new_views = int(results[0])
            _counted(site.name, len(views), new_views)
        EVENTS.labels(site.name, "identify").inc(len(identifies))
        self.runtime.wake(IDENTIFY_JOB)
        return new_views + len(identifies)


class _Endpoint:
    """The collector's POST as a bare ASGI app (see `Collector.collect`)."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        await self.collector.collect(scope, receive, send)


@functools.cache
def _accepted(site: str) -> Any:
    # A counter's child looked up once per site, not by labels() on every request.
    return REQUESTS.labels(site, "accepted")


@functools.cache
def _kind(site: str, kind: str) -> Any:
    return EVENTS.labels(site, kind)


def _counted(site: str, views: int, new: int) -> None:
    _kind(site, "page_view").inc(new)
    if views != new:
        _kind(site, "duplicate").inc(views - new)


def _page_view(
    site: SiteConfig, visitor: str, event: PageViewEvent, received: datetime, source: str
) -> visitors.PageView:
    ids = click_ids(event.url, event.fbc, event.fbp)
    return visitors.PageView(
        site=site.name,
        event_id=event.id,
        visitor=visitor,
        occurred_at=moment(event.at, received),
        url=event.url,
        referrer=event.referrer or None,
        title=event.title or None,
        utm=ids.utm,
        fbc=ids.fbc,
        fbp=ids.fbp,
        source=source,
    )


def routes(runtime: Runtime, config: WebtagConfig) -> list[Route]:
    """The collector's routes for the daemon's server."""
    return Collector(runtime, config).routes()
