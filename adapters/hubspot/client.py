"""The HubSpot CRM v3 contacts client, on connector/http.py.

Why not `hubspot-api-client`: its generated REST layer (urllib3) has its own retry
policy and exceptions, so HubSpot would be the one adapter whose 429s, daily limit,
timeouts and metrics bypass the shared error table and rate-limit scopes; its models
are plain generated classes that buy us nothing over the few JSON fields we read; and
its signature helper (hubspot/utils/signature.py, read in HubSpot/hubspot-api-python)
defaults to v2, takes the body as `str` (so raw bytes must be decoded and re-encoded
first), compares `str`s (hmac.compare_digest raises TypeError on a non-ASCII header
instead of saying "invalid"), raises rather than returns False on a stale timestamp
and accepts any timestamp from the future. adapters/hubspot/signature.py does v3 on
the raw bytes in 40 lines. So: plain requests through connector/http.py, and no extra
dependency.

What it does (§G): search by `lastmodifieddate` ascending, 200 a page, past the
10,000-result cap by restarting with GTE from the last timestamp seen and dropping the
boundary's already-seen ids; at most `search_rate` searches per second per account;
batch upsert by email, 100 a call; batch update of the status property, 100 a call;
429 and the `X-HubSpot-RateLimit-*` headers honoured; the daily limit tracked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from adapters.hubspot.config import HubSpotConfig
from connector.sdk import (
    IGNORE,
    ErrorTable,
    Fail,
    Hooks,
    HttpClient,
    HttpError,
    RateLimited,
    Scope,
    metrics_hooks,
)

SEARCH = "/crm/v3/objects/contacts/search"
BATCH = "/crm/v3/objects/contacts/batch"
CONTACTS = "/crm/v3/objects/contacts"
PAGE = 200  # search page maximum
CAP = 10_000  # results per search query; `after` at or past it is a 400
BATCH_MAX = 100
# Our standard contact attributes -> HubSpot's default contact properties.
STANDARD_PROPERTIES = {
    "email": "email",
    "first_name": "firstname",
    "last_name": "lastname",
    "phone": "phone",
    "company": "company",
    "city": "city",
    "state": "state",
    "zip": "zip",
    "country": "country",
}


class HubSpotError(RuntimeError):
    """A HubSpot call that cannot succeed as asked; the message says what to do."""


def to_ms(value: str) -> int:
    """A datetime property (ISO-8601 with Z, or ms since the epoch) in ms."""
    if value.isdigit():
        return int(value)
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _code(response: requests.Response) -> str | None:
    # A 429 names its policy (DAILY, SECONDLY, TEN_SECONDLY_ROLLING); other errors a
    # category (VALIDATION_ERROR, INVALID_AUTHENTICATION, OBJECT_NOT_FOUND, ...).
    body = _json(response)
    found = body.get("policyName") or body.get("category")
    return str(found) if found else None


def _written_ms(row: Mapping[str, Any]) -> int | None:
    """When HubSpot says it wrote a batch result: what its webhook's occurredAt and the
    next search's lastmodifieddate will carry for this write."""
    props = row.get("properties") or {}
    value = row.get("updatedAt") or props.get("lastmodifieddate")
    try:
        return to_ms(str(value)) if value else None
    except ValueError:
        return None


def seconds_to_midnight(now: float) -> float:
    """Until the daily limit resets (GUESS: HubSpot resets at midnight in the account's
    time zone; UTC midnight is used, so a pause may end up to a day early or late)."""
    return 86_400 - now % 86_400


def error_table(wall: Callable[[], float] = time.time) -> ErrorTable:
    """HubSpot's errors (§G): 429s by policy, token and scope errors as failures."""

    def wait(response: requests.Response) -> float | None:
        if response.status_code != 429:
            return None
        policy = _code(response)
        if policy == "DAILY":
            return seconds_to_midnight(wall())
        if policy == "SECONDLY":
            return 1.0
        interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", "")
        return int(interval) / 1000 if interval.isdigit() else None

    return ErrorTable(
        statuses={
            401: Fail(TOKEN_ACTION),
            403: Fail("the private app lacks a scope: add crm.objects.contacts.read and .write"),
            404: IGNORE,  # get by id: absent is an answer, not an error
            429: RateLimited("account", default_wait=10.0),
        },
        codes={
            "DAILY": RateLimited("daily", default_wait=3600.0),
            "SECONDLY": RateLimited("search", default_wait=1.0),
            "TEN_SECONDLY_ROLLING": RateLimited("account", default_wait=10.0),
            "INVALID_AUTHENTICATION": Fail(TOKEN_ACTION),
        },
        code_of=_code,
        wait_of=wait,
        fallback="HubSpot refused the request: see the error message; fix the mapping or "
        "the property (it may not exist in the portal), then retry",
    )


TOKEN_ACTION = (
    "the HubSpot token was refused: create a private-app token with the "
    "crm.objects.contacts.read and .write scopes and set hubspot.token"
)


@dataclass
class DailyUsage:
    """Calls left today: HubSpot's header when a response had it, else our own count."""

    limit: int
    used: int = 0
    remaining: int | None = None
    day: int = -1

    def count(self, now: float) -> None:
        day = int(now // 86_400)
        if day != self.day:
            self.day, self.used, self.remaining = day, 0, None
        self.used += 1
        if self.remaining is not None:
            self.remaining = max(0, self.remaining - 1)

    def left(self) -> int:
        return self.remaining if self.remaining is not None else max(0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class HubSpotContact:
    """A contact as search or read returns it."""

    id: str
    modified_ms: int
    properties: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class ContactInput:
    """One contact to upsert by email."""

    email: str
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Upserted:
    id: str
    email: str
    new: bool
    """True: HubSpot created the contact; False: it updated an existing one."""
    written_ms: int | None = None
    """HubSpot's own time of the write (the result's updatedAt), when it said."""


@dataclass(slots=True)
class StatusPush:
    """What a status batch update did."""

    updated: list[str] = field(default_factory=list)
    written_ms: dict[str, int] = field(default_factory=dict)
    """Per updated id, HubSpot's own time of the write (the result's updatedAt)."""
    missing: list[str] = field(default_factory=list)
    """Contact ids HubSpot does not know (deleted or merged there)."""


def lead_properties(
    attrs: Mapping[str, Any], context: Mapping[str, Any], config: HubSpotConfig
) -> dict[str, str]:
    """HubSpot properties for a contact: its standard attributes, then its lead context
    (source, campaign, form...) under the properties `context_properties` names."""
    out = {
        STANDARD_PROPERTIES[k]: str(v)
        for k, v in attrs.items()
        if k in STANDARD_PROPERTIES and v not in (None, "")
    }
    for key, prop in config.context_properties.items():
        value = context.get(key)
        if value not in (None, ""):
            out[prop] = str(value)
    return out


class HubSpotClient:
    """Contacts search, upsert and status update for one HubSpot account."""

    def __init__(
        self,
        config: HubSpotConfig,
        *,
        hooks: Hooks | None = None,
        stopping: threading.Event | None = None,
        attempts: int = 5,
        backoff: float = 0.5,
        page: int = PAGE,
        cap: int = CAP,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`clock` and `sleep` pace the scopes, `wall` dates the daily limit (tests pass
        a fake time); `page` and `cap` are HubSpot's search page size and result cap
        (tests pass smaller ones to cross the cap without 10,000 contacts)."""
        self.config, self._wall = config, wall
        self.page, self.cap = page, cap
        self.usage = DailyUsage(config.daily_limit)
        scopes = {
            "account": Scope("account", clock=clock, sleep=sleep),
            "search": Scope("search", rate=config.search_rate, per=1.0, clock=clock, sleep=sleep),
            "daily": Scope("daily", clock=clock, sleep=sleep),
        }
        self.http = HttpClient(
            "hubspot",
            config.api_url,
            error_table(wall),
            headers={
                "Authorization": f"Bearer {config.token.get_secret_value()}",
                "Content-Type": "application/json",
            },
            timeout=(min(10.0, config.timeout), config.timeout),
            attempts=attempts,
            backoff=backoff,
            scopes=scopes,
            hooks=hooks if hooks is not None else metrics_hooks(),
            on_response=self._observe,
            stopping=stopping,
            sleep=sleep,
        )

    def close(self) -> None:
        self.http.close()

    def _observe(self, response: requests.Response) -> None:
        """Track the limits from every response, and stop before HubSpot has to say 429."""
        now = self._wall()
        self.usage.count(now)
        headers = response.headers
        daily = headers.get("X-HubSpot-RateLimit-Daily-Remaining", "")
        if daily.isdigit():
            self.usage.remaining = int(daily)
        if self.usage.left() == 0:
            self.http.scope("daily").pause(seconds_to_midnight(now))
        left = headers.get("X-HubSpot-RateLimit-Remaining", "")
        interval = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", "")
        if left == "0" and interval.isdigit():
            # The rolling window frees a slot within one interval.
            self.http.scope("account").pause(int(interval) / 1000)

    def _post(self, path: str, body: Any, scope: Sequence[str]) -> dict[str, Any]:
        response = self.http.request("POST", path, json=body, scope=scope)
        if response.status_code == 404:
            raise HubSpotError(f"HubSpot: POST {path} is not found: check hubspot.api_url")
        return _json(response)

    # ------------------------------------------------------------------ pull
    def modified_since(
        self, since_ms: int | None, properties: Sequence[str] = ()
    ) -> Iterator[HubSpotContact]:
        """Every contact modified at or after `since_ms` (None: all), oldest first, each
        once even across the 10,000-result cap. Contacts modified while this runs may
        come again later or (offset paging) be passed over: the caller re-reads a lag
        window from its cursor."""
        wanted = sorted({"email", "lastmodifieddate", self.config.status_property, *properties})
        boundary = since_ms
        latest, latest_ids = -1, set[str]()
        while True:
            restart = False
            after = 0
            first: int | None = None  # the first timestamp this query returned
            while not restart:
                body: dict[str, Any] = {
                    "filterGroups": []
                    if boundary is None
                    else [
                        {
                            "filters": [
                                {
                                    "propertyName": "lastmodifieddate",
                                    "operator": "GTE",
                                    "value": str(boundary),
                                }
                            ]
                        }
                    ],
                    "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                    "properties": wanted,
                    "limit": min(self.page, self.cap - after),
                }
                if after:
                    body["after"] = str(after)
                page = self._post(SEARCH, body, ("search", "daily"))
                for row in page.get("results", []):
                    found = self._contact(row)
                    first = found.modified_ms if first is None else first
                    if found.modified_ms < latest:
                        raise HubSpotError(
                            "HubSpot search returned contacts out of lastmodifieddate order"
                        )
                    if found.modified_ms == latest:
                        if found.id in latest_ids:
                            continue  # the boundary of a restart, already yielded
                        latest_ids.add(found.id)
                    else:
                        latest, latest_ids = found.modified_ms, {found.id}
                    yield found
                following = page.get("paging", {}).get("next", {}).get("after")
                if following is None:
                    return
                after = int(following)
                restart = after >= self.cap
            if first == latest:
                # A whole 10,000-result query had one timestamp: a restart from it
                # would read the same window again, forever.
                raise HubSpotError(
                    f"more than {self.cap} contacts share lastmodifieddate {latest}: HubSpot "
                    "search cannot page past them"
                )
            boundary = latest

    @staticmethod
    def _contact(row: Mapping[str, Any]) -> HubSpotContact:
        props = dict(row.get("properties") or {})
        modified = props.get("lastmodifieddate") or row.get("updatedAt")
        if not modified:
            raise HubSpotError(f"HubSpot contact {row.get('id')} has no lastmodifieddate")
        return HubSpotContact(str(row["id"]), to_ms(str(modified)), props)

    # ------------------------------------------------------------------ push
    def upsert(self, contacts: Sequence[ContactInput]) -> list[Upserted]:
        """Create or update contacts by email, 100 a call. Two inputs for one email are
        merged first (HubSpot refuses duplicates in a batch): later values win, so pass
        them oldest first."""
        merged: dict[str, dict[str, str]] = {}
        for c in contacts:
            key = c.email.strip().lower()
            if not key:
                raise HubSpotError("a contact without an email cannot be upserted by email")
            merged.setdefault(key, {}).update(c.properties)
        out: list[Upserted] = []
        emails = list(merged)
        for start in range(0, len(emails), BATCH_MAX):
            chunk = emails[start : start + BATCH_MAX]
            inputs = [
                {"idProperty": "email", "id": e, "properties": {**merged[e], "email": e}}
                for e in chunk
            ]
            body = self._post(f"{BATCH}/upsert", {"inputs": inputs}, ("account", "daily"))
            for row in body.get("results", []):
                props = row.get("properties") or {}
                email = str(props.get("email") or "").lower()
                out.append(Upserted(str(row["id"]), email, bool(row.get("new")), _written_ms(row)))
        return out

    def push_statuses(self, changes: Sequence[tuple[str, str]]) -> StatusPush:
        """Set (HubSpot contact id, HubSpot value) on the status property, 100 a call.
        Several changes for one contact: the last one is sent (pass them in order)."""
        prop = self.config.status_property
        result = StatusPush()
        latest = dict(changes)
        ids = list(latest)
        for start in range(0, len(ids), BATCH_MAX):
            chunk = ids[start : start + BATCH_MAX]
            inputs = [{"id": i, "properties": {prop: latest[i]}} for i in chunk]
            body = self._post(f"{BATCH}/update", {"inputs": inputs}, ("account", "daily"))
            missing = {
                str(i)
                for e in body.get("errors", [])
                if e.get("category") == "OBJECT_NOT_FOUND"
                for i in (e.get("context") or {}).get("ids", [])
            }
            result.missing += [i for i in chunk if i in missing]
            for row in body.get("results", []):
                result.updated.append(str(row["id"]))
                at = _written_ms(row)
                if at is not None:
                    result.written_ms[str(row["id"])] = at
        return result

    def read(self, ids: Sequence[str], properties: Sequence[str] = ()) -> list[HubSpotContact]:
        """Contacts by id, 100 a call; unknown ids are left out."""
        wanted = sorted({"email", "lastmodifieddate", self.config.status_property, *properties})
        out: list[HubSpotContact] = []
        for start in range(0, len(ids), BATCH_MAX):
            inputs = [{"id": i} for i in ids[start : start + BATCH_MAX]]
            body = self._post(
                f"{BATCH}/read", {"inputs": inputs, "properties": wanted}, ("account", "daily")
            )
            out += [self._contact(r) for r in body.get("results", [])]
        return out

    def get(self, contact_id: str, properties: Sequence[str] = ()) -> HubSpotContact | None:
        """One contact by id, or None if HubSpot has none."""
        wanted = sorted({"email", "lastmodifieddate", self.config.status_property, *properties})
        response = self.http.request(
            "GET",
            f"{CONTACTS}/{contact_id}",
            params={"properties": ",".join(wanted)},
            scope=("account", "daily"),
        )
        if response.status_code == 404:
            return None
        return self._contact(_json(response))

    def check(self) -> None:
        """Raise HubSpotError with what to do if the token or URL does not work."""
        try:
            self._post(SEARCH, {"limit": 1, "properties": ["email"]}, ("search", "daily"))
        except HttpError as exc:
            raise HubSpotError(exc.action or str(exc)) from exc
