"""A local emulator of the HubSpot CRM v3 contacts API (Starlette on uvicorn, on a thread).

Built from shared/reference/external-apis.md §G, not from our client: search with
filters, sorts, paging and the 10,000-result cap; batch upsert/update/read; get by id;
per-account limits with `X-HubSpot-RateLimit-*` headers and HubSpot-shaped 429s;
bearer-token auth; v3-signed `contact.propertyChange` webhooks; fault injection.
The parts: fake_state (contacts, search), fake_limits, fake_webhooks, fake_app (routes).
Control: the Python methods below, or POST /_fake/... (no token) when run standalone.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from adapters.hubspot.fake_app import SEARCH_CAP, Api, batch_result
from adapters.hubspot.fake_limits import Limits
from adapters.hubspot.fake_state import Contact, HubSpotError, Portal, iso
from adapters.hubspot.fake_webhooks import Sender
from connector.sdk import ThreadedServer, serve_until_interrupted

UNAUTHORIZED = (  # HubSpot's 401 text for a missing or unknown token [2nd]
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and "
    "you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


@dataclass
class Faults:
    """Injected failures of the API routes (control routes never fail)."""

    error_rate: float = 0.0  # answered `error_status` before anything is done
    error_status: int = 502
    latency: float = 0.0  # seconds added to every API request (the "slow" fault)
    drop_rate: float = 0.0  # handled, then the connection dies before the answer


class FakeHubSpot:
    """One HubSpot account (portal) with a private-app token and a webhook app."""

    def __init__(
        self,
        *,
        token: str = "pat-na1-fake-0000",
        portal_id: int = 62515,
        app_id: int = 4242,
        client_secret: str = "fake-client-secret",
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        max_per_interval: int = 100,
        interval_ms: int = 10_000,
        daily: int = 250_000,
        search_per_second: int = 5,
        search_cap: int = SEARCH_CAP,
    ) -> None:
        """`search_cap`: results one search query can page through (HubSpot: 10,000);
        tests set it lower to cross it cheaply."""
        self.token, self.app_id, self.clock = token, app_id, clock
        self.search_cap = search_cap
        self.portal = Portal(clock_ms=lambda: int(self.clock() * 1000), portal_id=portal_id)
        self.limits = Limits(
            clock,
            max_per_interval=max_per_interval,
            interval_ms=interval_ms,
            daily=daily,
            search_per_second=search_per_second,
        )
        self.faults = Faults()
        self.calls: Counter[str] = Counter()
        self.hooks = Sender(app_id, portal_id)
        self.hooks.options.secret = client_secret
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ server
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on a thread; returns the base URL (port 0: any free port)."""
        self._server = ThreadedServer(Api(self).app(), "fake-hubspot")
        self.base_url = self._server.start(host, port)
        return self.base_url

    def stop(self) -> None:
        self.hooks.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> FakeHubSpot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers for routes
    def authorize(self, header: str | None) -> None:
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "bearer" or value.strip() != self.token:
            raise HubSpotError(401, "INVALID_AUTHENTICATION", UNAUTHORIZED)

    def fault_roll(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def write(self, inputs: list[dict[str, Any]], *, upsert: bool) -> Any:
        """Batch upsert (by email) or update: every input's properties are checked before
        any is written, so a 400 leaves the portal as it was."""
        portal = self.portal
        with portal.lock:
            checked = []
            for item in inputs:
                props = item.get("properties", {})
                if not isinstance(props, dict):
                    raise HubSpotError(400, "VALIDATION_ERROR", "properties must be an object")
                checked.append((item, portal.check(props)))
            results, missing = [], []
            for item, props in checked:
                key = str(item.get("id"))
                contact = portal.find(key, "email" if upsert else item.get("idProperty"))
                if contact is None and not upsert:
                    missing.append(key)
                    continue
                before = {} if contact is None else dict(contact.properties)
                if contact is None:
                    contact = portal.create({**props, "email": key})
                else:
                    portal.update(contact, props)
                self._changed(contact, before, "INTEGRATION")
                out = contact.json(sorted(contact.properties))
                if upsert:
                    out["new"] = not before
                results.append(out)
            return batch_result(results, missing, portal.clock_ms())

    def _changed(self, contact: Contact, before: Mapping[str, str], source: str) -> None:
        skip = {"lastmodifieddate", "hs_object_id", "createdate"}
        for name, value in contact.properties.items():
            if name not in skip and before.get(name) != value:
                self.hooks.emit(contact.id, name, value, contact.updated, source)

    # ------------------------------------------------------------------ control
    def add_contact(self, email: str, at: int | None = None, **properties: str) -> Contact:
        """A contact that exists "in HubSpot" (no webhook: it was there before)."""
        checked = self.portal.check(properties)
        return self.portal.create({**checked, "email": email}, at=at)

    def bulk_add(self, n: int, start_ms: int, step_ms: int = 1, same: int = 1) -> list[int]:
        """`n` contacts whose lastmodifieddate rises by `step_ms` every `same` contacts
        (ties on purpose), made directly: cheap enough for 10,000+ in a test."""
        ids = []
        with self.portal.lock:
            for i in range(n):
                at = start_ms + (i // same) * step_ms
                ids.append(self.portal.create({"email": f"bulk{i}@example.com"}, at=at).id)
        return ids

    def change(
        self,
        contact_id: int,
        name: str,
        value: str,
        *,
        source: str = "CRM_UI",
        at: int | None = None,
    ) -> Contact:
        """A person changes a property "in HubSpot": the contact is modified and a
        `contact.propertyChange` webhook is sent if subscribed."""
        portal = self.portal
        with portal.lock:
            contact = portal.find(str(contact_id), None)
            if contact is None:
                raise KeyError(f"no contact {contact_id}")
            before = dict(contact.properties)
            portal.update(contact, portal.check({name: value}), at=at)
            self._changed(contact, before, source)
            return contact

    def control_create(self, email: str, **properties: str) -> dict[str, Any]:
        contact = self.portal.create({**self.portal.check(properties), "email": email})
        return contact.json([*sorted(properties), "email"])

    def control_change(self, id: str, name: str, value: str) -> dict[str, Any]:
        return self.change(int(id), name, value).json([name, "lastmodifieddate"])

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        for key, value in changes.items():
            if not hasattr(self.faults, key):
                raise ValueError(f"unknown fault {key!r}")
            setattr(self.faults, key, value)
        return asdict(self.faults)

    def set_webhooks(self, **changes: Any) -> dict[str, Any]:
        """Subscribe a URL, choose properties, and turn on duplicates, reordering or
        forced retries (see fake_webhooks.WebhookOptions)."""
        opts = self.hooks.options
        for key, value in changes.items():
            if not hasattr(opts, key):
                raise ValueError(f"unknown webhook option {key!r}")
            setattr(opts, key, set(value) if key == "properties" and value is not None else value)
        return {k: v for k, v in asdict(opts).items() if k not in ("secret", "properties")}

    def flush_webhooks(self, timeout: float = 10.0) -> None:
        self.hooks.flush(timeout)

    def state(self) -> dict[str, Any]:
        return {
            "contacts": len(self.portal.contacts),
            "calls": dict(self.calls),
            "used_today": self.limits.used_today,
            "webhooks": dict(self.hooks.stats),
            "now": iso(self.portal.clock_ms()),
        }


def serve(
    port: int,
    host: str = "127.0.0.1",
    contacts: int = 20,
    webhook_url: str | None = None,
    secret: str = "fake-client-secret",
    token: str = "pat-na1-fake-0000",
) -> None:
    """`leadsync fake hubspot`: serve until Ctrl-C, after printing how to use it."""
    fake = FakeHubSpot(token=token, client_secret=secret)
    now = int(time.time() * 1000)
    for i in range(contacts):
        fake.add_contact(
            f"person{i}@example.com",
            at=now - (contacts - i) * 60_000,
            firstname=f"Person{i}",
            hs_lead_status="NEW",
        )
    if webhook_url:
        fake.set_webhooks(url=webhook_url)
    url = fake.start(host, port)
    first = min(fake.portal.contacts)
    print(f"Fake HubSpot at {url} (portal {fake.portal.portal_id}, {contacts} contacts)")
    print(f"token: {token}\nwebhook client secret: {secret}")
    hint = 'none (POST /_fake/webhooks {"url": ...} to send some)'
    print(f"webhooks: {webhook_url or hint}")
    print("Change a contact's status in HubSpot (sends a signed contact.propertyChange):")
    print(
        f"  curl -X POST {url}/_fake/contacts/{first} -H 'Content-Type: application/json' "
        '-d \'{"name": "hs_lead_status", "value": "CONNECTED"}\''
    )
    print(f"State: curl {url}/_fake/state", flush=True)
    serve_until_interrupted(fake.stop)
