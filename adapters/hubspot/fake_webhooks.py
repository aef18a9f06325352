"""The HubSpot emulator's webhook sender: `contact.propertyChange` events in JSON arrays
of at most 100, signed with X-HubSpot-Signature-v3 (§G), retried when the receiver
fails, and duplicated, reordered or force-retried on demand.

The signature is computed here from §G's formula, deliberately not with our
adapters/hubspot/signature.py, so the two check each other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests

SUBSCRIPTION = "contact.propertyChange"
MAX_EVENTS = 100  # per delivery (§G)
MAX_RETRIES = 10  # HubSpot: up to 10 retries over 24 h; here on a compressed schedule


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """Base64(HMAC-SHA256(secret, method + uri + body + timestamp)) (§G)."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Delivery:
    events: list[dict[str, Any]]
    attempt: int = 0
    due: float = 0.0


@dataclass
class WebhookOptions:
    """What deliveries do; change with FakeHubSpot.set_webhooks(...)."""

    url: str | None = None
    secret: str = "fake-client-secret"
    properties: set[str] | None = None  # subscribed propertyNames; None: every property
    duplicate: bool = False  # every delivery is sent twice
    reorder: bool = False  # deliveries queued together go out newest first
    force_retries: int = 0  # first n attempts count as failed even when answered 2xx
    retry_delays: list[float] = field(default_factory=lambda: [0.05 * 2**i for i in range(10)])
    timeout: float = 5.0  # HubSpot waits 5 s for an answer


class Sender:
    """One background thread that delivers queued events in order (or reordered)."""

    def __init__(self, app_id: int, portal_id: int) -> None:
        self.app_id, self.portal_id = app_id, portal_id
        self.options = WebhookOptions()
        self.cond = threading.Condition()
        self.queue: list[Delivery] = []
        self.pending: list[dict[str, Any]] = []
        self.busy = False
        self.stats: Counter[str] = Counter()
        self.received: list[dict[str, Any]] = []  # every attempt's headers and body (tests)
        self._ids = itertools.count(1)
        self._http = requests.Session()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fake-hubspot-hooks", daemon=True)
        self._thread.start()

    def emit(self, object_id: int, name: str, value: str, occurred_at: int, source: str) -> None:
        """Queue the event of one property change, if a subscription covers it."""
        opts = self.options
        if opts.url is None or (opts.properties is not None and name not in opts.properties):
            return
        event = {
            # eventId is not guaranteed unique by HubSpot (§G); here it is a counter.
            "eventId": next(self._ids),
            "subscriptionId": 1,
            "portalId": self.portal_id,
            "appId": self.app_id,
            "occurredAt": occurred_at,
            "subscriptionType": SUBSCRIPTION,
            "attemptNumber": 0,
            "objectId": object_id,
            "propertyName": name,
            "propertyValue": value,
            "changeSource": source,
            "sourceId": f"userId:{self.app_id}" if source == "CRM_UI" else str(self.app_id),
        }
        with self.cond:
            self.pending.append(event)
            self.stats["events"] += 1
            self.cond.notify_all()

    def _take_pending(self) -> None:
        events, self.pending = self.pending, []
        batches = [events[i : i + MAX_EVENTS] for i in range(0, len(events), MAX_EVENTS)]
        if self.options.reorder:
            batches = [b[::-1] for b in batches[::-1]]
        now = time.monotonic()
        self.queue.extend(Delivery(b, due=now) for b in batches)
        if self.options.duplicate:
            self.queue.extend(Delivery(list(b), due=now) for b in batches)

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self._stopping:
                    if self.pending:
                        self._take_pending()
                    now = time.monotonic()
                    ready = [d for d in self.queue if d.due <= now]
                    if ready:
                        break
                    nearest = min((d.due for d in self.queue), default=now + 0.05)
                    self.cond.wait(max(0.005, min(0.05, nearest - now)))
                if self._stopping:
                    return
                delivery = min(ready, key=lambda d: d.due)
                self.queue.remove(delivery)
                self.busy = True
            try:
                ok = self._attempt(delivery)
            finally:
                with self.cond:
                    self.busy = False
                    if not ok:
                        self._retry(delivery)
                    self.cond.notify_all()

    def _attempt(self, delivery: Delivery) -> bool:
        opts = self.options
        assert opts.url is not None, "fake bug: a delivery queued without a URL"
        events = [{**e, "attemptNumber": delivery.attempt} for e in delivery.events]
        body = orjson.dumps(events)
        timestamp = str(int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature-v3": sign_v3(opts.secret, "POST", opts.url, body, timestamp),
            "X-HubSpot-Signature-Version": "v3",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) (fake)",
        }
        self.stats["attempts"] += 1
        self.received.append({"headers": headers, "body": body, "url": opts.url})
        try:
            answer = self._http.post(opts.url, data=body, headers=headers, timeout=opts.timeout)
            ok = 200 <= answer.status_code < 300
        except requests.RequestException:
            ok = False
        if ok and delivery.attempt < opts.force_retries:
            self.stats["forced_retries"] += 1
            return False
        self.stats["delivered" if ok else "failed_attempts"] += 1
        return ok

    def _retry(self, delivery: Delivery) -> None:
        delays = self.options.retry_delays
        if delivery.attempt >= min(MAX_RETRIES, len(delays)):
            self.stats["given_up"] += 1
            return
        delivery.due = time.monotonic() + delays[delivery.attempt]
        delivery.attempt += 1
        self.queue.append(delivery)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued event is delivered or given up."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.pending or self.queue or self.busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("fake HubSpot: webhook deliveries still queued")
                self.cond.wait(min(left, 0.05))

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        self._thread.join(timeout=2)
        self._http.close()
