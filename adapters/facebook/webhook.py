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
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from adapters.facebook.config import FacebookConfig
from adapters.facebook.graph import Action, GraphError
from adapters.facebook.source import FacebookSource, Form
from connector.sdk import (
    WEBHOOKS,
    IngestStats,
    Lead,
    Pipeline,
    RateLimitedWarning,
    Runtime,
    describe,
    inbox,
)

log = structlog.get_logger(__name__)

DRAIN_JOB = "facebook.webhooks"
# One warning a minute per route at most: a flood of forged requests is counted, not
# logged line by line.
forged = RateLimitedWarning("facebook.webhook_forged", every=60.0)
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
            forged(config.webhook_path, bytes=len(body))
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
    """The `leadgen` change values of a delivery; ValueError when it is not one (a
    signed body can still be anything: every shape is checked, nothing is assumed)."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(payload, dict) or payload.get("object") != "page":
        raise ValueError("not a page webhook")
    found = []
    for entry in _listed(payload.get("entry"), "entry"):
        if not isinstance(entry, dict):
            raise ValueError("an entry is not an object")
        for change in _listed(entry.get("changes"), "changes"):
            if not isinstance(change, dict):
                raise ValueError("a change is not an object")
            value = change.get("value") or {}
            if not isinstance(value, dict):
                raise ValueError("a change's value is not an object")
            if change.get("field") != "leadgen" or not value.get("leadgen_id"):
                continue
            lead_id = value["leadgen_id"]
            # An id goes into a Graph URL path: digits only (no `../me`, no objects).
            if isinstance(lead_id, bool) or not str(lead_id).isdigit():
                raise ValueError("leadgen_id is not a Graph id")
            found.append(value)
    return found


def _listed(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"`{name}` is not a list")
    return value


def fetch_pool() -> ThreadPoolExecutor:
    """The threads a drain fetches leads with. Made once per source and kept: at 200
    webhooks/s a drain run handles a handful of deliveries every few milliseconds, and
    starting eight threads for each was a measurable share of the daemon's CPU."""
    return ThreadPoolExecutor(max_workers=FETCHERS, thread_name_prefix="facebook-fetch")


# Errors that are the Page's (throttled, token, permission): the delivery is given back
# without counting the attempt, and the Page is paused or marked failing.
_PAGE_TROUBLE = (Action.THROTTLED, Action.TOKEN, Action.PERMISSION)
_PAUSED_FOR = timedelta(seconds=60)


def drain(
    runtime: Runtime,
    source: FacebookSource,
    pipeline: Callable[[], Pipeline],
    pool: ThreadPoolExecutor,
    limit: int = 200,
) -> IngestStats:
    """Process stored deliveries until none is left (or the daemon stops); `pool`
    (from `fetch_pool`) fetches the leads.

    Each delivery is handled on its own: a malformed one is marked done with its error;
    one that fails (a lead the Graph refuses, a record the store cannot take) counts an
    attempt and becomes a dead letter after `server.webhook_attempts`; the others of
    the same claim are processed all the same."""
    total = IngestStats()
    store = runtime.store
    server = getattr(runtime.config, "server", None)
    attempts = int(getattr(server, "webhook_attempts", inbox.DEFAULT_ATTEMPTS))
    while not runtime.stopping.is_set():
        claimed = inbox.claim(store, source.name, limit)
        if not claimed:
            break
        source.discover()
        forms = source.forms()
        parsed: list[tuple[inbox.Delivery, list[dict[str, Any]]]] = []
        for delivery in claimed:
            try:
                parsed.append((delivery, leadgen_changes(delivery.body)))
            except Exception as exc:  # any shape a signed body can take
                log.info("facebook.webhook_malformed", delivery=delivery.id, error=describe(exc))
                inbox.done(store, [delivery.id], error=describe(exc))
        # Each change is one Graph read; they overlap (the latency is the API's).
        changes = [c for _, cs in parsed for c in cs]
        fetched = dict(
            zip(map(id, changes), pool.map(_attempt(source, forms), changes), strict=True)
        )
        ready: list[tuple[inbox.Delivery, list[Lead]]] = []
        failed: list[tuple[inbox.Delivery, str]] = []
        refused: list[tuple[inbox.Delivery, str]] = []
        paused: list[int] = []
        for delivery, cs in parsed:
            outcomes = [fetched[id(c)] for c in cs]
            failure = next((o for o in outcomes if isinstance(o, Exception)), None)
            if failure is None:
                ready.append((delivery, [o for o in outcomes if isinstance(o, Lead)]))
            elif isinstance(failure, GraphError) and failure.action in _PAGE_TROUBLE:
                page = str(cs[0].get("page_id") or "")
                if page:
                    source.trouble(page, failure)
                paused.append(delivery.id)
            elif isinstance(failure, GraphError) and failure.action is Action.FAIL:
                refused.append((delivery, f"Graph refused the lead: {describe(failure)}"))
            else:
                failed.append((delivery, describe(failure)))
        failed += _store(runtime, source, pipeline, ready, total)
        died = inbox.fail(store, failed, attempts) + inbox.bury(store, refused)
        if died:
            log.warning("facebook.webhook_dead_letters", deliveries=died)
        inbox.release(
            store, paused, "the Page is paused or failing", until=datetime.now(UTC) + _PAUSED_FOR
        )
        if failed or paused:
            break  # what failed waits for its backoff, not a hot loop
    return total


def _store(
    runtime: Runtime,
    source: FacebookSource,
    pipeline: Callable[[], Pipeline],
    ready: list[tuple[inbox.Delivery, list[Lead]]],
    total: IngestStats,
) -> list[tuple[inbox.Delivery, str]]:
    """Ingest the leads of `ready` deliveries and mark them done in the same
    transaction; returns the deliveries that could not be stored, with why. All in one
    transaction first; if that fails, one delivery at a time, so one bad record fails
    only its own delivery."""
    if not ready:
        return []
    empty = [d.id for d, found in ready if not found]
    with_leads = [(d, found) for d, found in ready if found]
    inbox.done(runtime.store, empty)
    groups = [with_leads] if with_leads else []
    failed: list[tuple[inbox.Delivery, str]] = []
    while groups:
        group = groups.pop()
        ids = [d.id for d, _ in group]
        try:
            stats = pipeline().ingest(
                source.name,
                [lead for _, found in group for lead in found],
                source.context(),
                also=partial(inbox.mark_done, ids=ids),
            )
        except Exception as exc:
            if len(group) == 1:
                failed.append((group[0][0], describe(exc)))
            else:
                groups.extend([one] for one in group)
            continue
        for name in ("rows", "created", "updated", "merged", "unchanged", "quarantined"):
            setattr(total, name, getattr(total, name) + getattr(stats, name))
    return failed


def _attempt(
    source: FacebookSource, forms: dict[str, Form]
) -> Callable[[dict[str, Any]], Lead | Exception | None]:
    def attempt(change: dict[str, Any]) -> Lead | Exception | None:
        try:
            return _fetch(source, change, forms)
        except Exception as exc:  # one lead's failure is its delivery's, not the drain's
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
