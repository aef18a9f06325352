"""The leadgen webhook: verify, persist, answer; the drain job does the rest.

Meta signs the exact body bytes with the app secret (`X-Hub-Signature-256`). The
signature is checked in constant time before the body is parsed or stored: a forged
or unsigned request gets 403 and leaves no trace but a metric. A genuine one is stored
in the webhook inbox and answered 200 at once; the drain job fetches each `leadgen_id`
(the payload carries ids only) and ingests it. Duplicate deliveries fetch the same lead
again and change nothing (leads are keyed by their id); a webhook that never comes is
covered by the next poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from adapters.facebook.config import FacebookConfig
from adapters.facebook.graph import Action, GraphError
from adapters.facebook.source import FacebookSource, Form
from connector.model import Lead
from connector.pipeline import IngestStats, Pipeline
from connector.ports import Runtime
from connector.runtime import inbox
from connector.runtime.metrics import WEBHOOKS

log = structlog.get_logger(__name__)

DRAIN_JOB = "facebook.webhooks"
FETCHERS = 8  # concurrent Graph reads while draining


def signature(secret: str, body: bytes) -> str:
    """What Meta sends in X-Hub-Signature-256 for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verified(secret: str, body: bytes, header: str | None) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII str (a TypeError, so a 500),
    # and a header with such characters is a forgery like any other (403).
    given = str(header or "").encode("utf-8", "surrogateescape")
    return bool(given) and hmac.compare_digest(signature(secret, body).encode(), given)


def routes(runtime: Runtime, config: FacebookConfig) -> list[Route]:
    secret = config.app_secret.get_secret_value()
    verify_token = config.verify_token.get_secret_value() if config.verify_token else None
    source = config.source

    async def handshake(request: Request) -> Response:
        # Meta's GET verification: echo hub.challenge when the verify token matches.
        q = request.query_params
        token = q.get("hub.verify_token") or ""
        if (
            q.get("hub.mode") == "subscribe"
            and verify_token is not None
            and hmac.compare_digest(token.encode(), verify_token.encode())
        ):
            return PlainTextResponse(q.get("hub.challenge") or "")
        return PlainTextResponse("verify token mismatch", status_code=403)

    async def receive(request: Request) -> Response:
        body = await request.body()
        if not verified(secret, body, request.headers.get("x-hub-signature-256")):
            WEBHOOKS.labels(source, "forged").inc()
            log.warning("facebook.webhook_forged", bytes=len(body))
            return PlainTextResponse("bad signature", status_code=403)
        await asyncio.wrap_future(inbox.writer(runtime.store).submit(source, body))
        WEBHOOKS.labels(source, "stored").inc()
        runtime.wake(DRAIN_JOB)
        return PlainTextResponse("EVENT_RECEIVED")

    return [
        Route(config.webhook_path, handshake, methods=["GET"]),
        Route(config.webhook_path, receive, methods=["POST"]),
    ]


def leadgen_changes(body: str) -> list[dict[str, Any]]:
    """The `leadgen` change values of a delivery; ValueError when it is not one."""
    payload = json.loads(body)
    if not isinstance(payload, dict) or payload.get("object") != "page":
        raise ValueError("not a page webhook")
    found = []
    for entry in payload.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            if change.get("field") == "leadgen" and value.get("leadgen_id"):
                found.append(value)
    return found


def fetch_pool() -> ThreadPoolExecutor:
    """The threads a drain fetches leads with. Made once per source and kept: at 200
    webhooks/s a drain run handles a handful of deliveries every few milliseconds, and
    starting eight threads for each was a measurable share of the daemon's CPU."""
    return ThreadPoolExecutor(max_workers=FETCHERS, thread_name_prefix="facebook-fetch")


def drain(
    runtime: Runtime,
    source: FacebookSource,
    pipeline: Callable[[], Pipeline],
    pool: ThreadPoolExecutor,
    limit: int = 200,
) -> IngestStats:
    """Process stored deliveries until none is left (or the daemon stops); `pool`
    (from `fetch_pool`) fetches the leads."""
    total = IngestStats()
    while not runtime.stopping.is_set():
        claimed = inbox.claim(runtime.store, source.name, limit)
        if not claimed:
            break
        done: list[int] = []
        retry: list[int] = []
        malformed: list[tuple[int, str]] = []
        records: list[Lead] = []
        source.discover()
        forms = source.forms()
        parsed: list[tuple[int, list[dict[str, Any]]]] = []
        for delivery in claimed:
            try:
                parsed.append((delivery.id, leadgen_changes(delivery.body)))
            except (ValueError, AttributeError) as exc:
                malformed.append((delivery.id, f"{type(exc).__name__}: {exc}"))
        # Each change is one Graph read; they overlap (the latency is the API's), while
        # storing them stays one transaction for the whole claim.
        changes = [c for _, cs in parsed for c in cs]
        fetched = dict(
            zip(map(id, changes), pool.map(_attempt(source, forms), changes), strict=True)
        )
        for delivery_id, cs in parsed:
            outcomes = [fetched[id(c)] for c in cs]
            failure = next((o for o in outcomes if isinstance(o, GraphError)), None)
            if failure is None:
                records.extend(o for o in outcomes if isinstance(o, Lead))
                done.append(delivery_id)
                continue
            retry.append(delivery_id)
            page = str(cs[0].get("page_id") or "")
            if failure.action is not Action.RETRY and page:
                source.trouble(page, failure)
        if records:
            stats = pipeline().ingest(
                source.name,
                records,
                source.context(),
                also=lambda conn, ids=done: inbox.mark_done(conn, ids),
            )
            for name in ("rows", "created", "updated", "merged", "unchanged", "quarantined"):
                setattr(total, name, getattr(total, name) + getattr(stats, name))
        else:
            inbox.done(runtime.store, done)
        for delivery_id, why in malformed:
            inbox.done(runtime.store, [delivery_id], error=why)
        inbox.release(runtime.store, retry, "Graph API error; will retry")
        if retry:
            break  # what failed waits for the next run, not a hot loop
    return total


def _attempt(
    source: FacebookSource, forms: dict[str, Form]
) -> Callable[[dict[str, Any]], Lead | GraphError | None]:
    def attempt(change: dict[str, Any]) -> Lead | GraphError | None:
        try:
            return _fetch(source, change, forms)
        except GraphError as exc:
            return exc

    return attempt


def _fetch(source: FacebookSource, change: dict[str, Any], forms: dict[str, Form]) -> Lead | None:
    lead_id = str(change["leadgen_id"])
    page_id = str(change.get("page_id") or "") or None
    try:
        raw = source.fetch(lead_id, page_id)
    except GraphError as exc:
        if exc.action is Action.MISSING:
            # Deleted, a test lead since removed, or not visible to this token: nothing
            # to store, and retrying will not change it.
            log.info("facebook.webhook_lead_missing", code=exc.code)
            return None
        raise
    form = forms.get(str(raw.get("form_id") or change.get("form_id") or ""))
    if form is None:
        form = Form(str(change.get("form_id") or ""), "", page_id or "", "ACTIVE")
    return source.lead(raw, form)
