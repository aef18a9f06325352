"""The contact.propertyChange webhook: verify, persist, answer; the drain does the rest.

HubSpot signs method + URI + raw body + timestamp (X-HubSpot-Signature-v3, §G). The
signature is checked on the bytes as received, before anything is parsed or stored:
a forged, unsigned or stale (> 5 min) request gets 401 and leaves no trace but a
metric. A genuine one is stored in the webhook inbox (connector/runtime/inbox.py) and
answered 204 at once (HubSpot gives up after 5 s and retries); the drain job
(adapters/hubspot/drain.py) turns it into status observations.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from adapters.hubspot.config import HubSpotConfig
from adapters.hubspot.signature import verify_v3
from connector.sdk import WEBHOOKS, RateLimitedWarning, Runtime, inbox

SOURCE = "hubspot"
"""The inbox's source name for HubSpot deliveries (and the leads' source)."""
DRAIN_JOB = "hubspot.webhooks"
forged = RateLimitedWarning("hubspot.webhook_forged", every=60.0)


def signed_url(config: HubSpotConfig, request: Request) -> str:
    """The URI HubSpot signed: the configured public URL (plus the query string it was
    called with), else the URL as this server received it."""
    if config.webhook_url is None:
        return str(request.url)
    query = request.url.query
    return config.webhook_url + (f"?{query}" if query else "")


def routes(runtime: Runtime, config: HubSpotConfig) -> list[Route]:
    """The webhook route, or none when no client secret is configured (then the pull
    alone brings HubSpot's changes, every `poll_every` seconds)."""
    if config.webhook_secret is None:
        return []
    secret = config.webhook_secret.get_secret_value().encode()

    async def receive(request: Request) -> Response:
        body = await request.body()
        ok = verify_v3(
            secret,
            method=request.method,
            uri=signed_url(config, request),
            body=body,
            signature=request.headers.get("x-hubspot-signature-v3"),
            timestamp=request.headers.get("x-hubspot-request-timestamp"),
        )
        if not ok:
            WEBHOOKS.labels(SOURCE, "forged").inc()
            forged(config.webhook_path, bytes=len(body))
            return PlainTextResponse("bad or stale signature", status_code=401)
        await asyncio.wrap_future(inbox.writer(runtime.store).submit(SOURCE, body))
        WEBHOOKS.labels(SOURCE, "stored").inc()
        runtime.wake(DRAIN_JOB)
        return Response(status_code=204)

    return [Route(config.webhook_path, receive, methods=["POST"])]
