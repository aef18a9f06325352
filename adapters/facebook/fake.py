"""A local emulator of the Meta Graph API, Lead Ads part (stdlib HTTP server).

Built from shared/reference/external-apis.md sections A, D, E, not from our client.
Where a behaviour is a guess rather than a documented fact the comment says GUESS.
Control routes under /_fake/... need no token (for the benchmark and `serve`).
"""

from __future__ import annotations

import base64
import bisect
import collections
import contextlib
import copy
import hashlib
import heapq
import hmac
import json
import math
import random
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
import yaml

from adapters.facebook import fake_data
from adapters.facebook.fake_audiences import AudienceError, Audiences

PAGE_PERMISSIONS = frozenset(
    {
        "ads_management",
        "ads_read",
        "leads_retrieval",
        "pages_show_list",
        "pages_read_engagement",
        "pages_manage_ads",
        "pages_manage_metadata",
    }
)
LEAD_FIELDS = {
    "id",
    "created_time",
    "field_data",
    "ad_id",
    "ad_name",
    "adset_id",
    "adset_name",
    "campaign_id",
    "campaign_name",
    "form_id",
    "is_organic",
    "platform",
    "partner_name",
    "custom_disclaimer_responses",
    "home_listing",
    "post",
    "post_submission_check_result",
    "retailer_item_id",
    "vehicle",
}  # SDK Lead.Field; absent values are omitted
AD_FIELDS = ("ad_id", "ad_name", "adset_id", "adset_name", "campaign_id", "campaign_name")
# Default fields when `fields` is absent. Lead: Meta's bulk-read example on
# marketing-api/guides/lead-ads/retrieving shows created_time, id, field_data. The others
# are GUESSES (Graph returns id plus a name-like field for most nodes).
DEFAULT_FIELDS = {
    "lead": ("created_time", "id", "field_data"),
    "form": ("id", "name", "status", "locale"),
    "page": ("name", "id"),
    "ad": ("id", "name"),
    "adset": ("id", "name"),
    "campaign": ("id", "name"),
}
FILTER_OPS = ("GREATER_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN", "LESS_THAN_OR_EQUAL")
THROTTLE_MESSAGES = {  # texts as commonly seen in Graph errors [2nd]; 80005 text is a GUESS
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80005: "(#80005) There have been too many leadgen api calls to this Page. "
    "Please wait a bit and try again.",
}
_BIG = 2**62
# A DELETE /{audience}/users URL longer than this is dropped: 250 rows of two hashes
# (email, phone) pass and 300 fail, as reported for the SDK (§E). GUESS: the length.
DELETE_URL_LIMIT = 44_000


class GraphError(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        *,
        type_: str = "OAuthException",
        subcode: int | None = None,
        status: int = 400,
        transient: bool | None = None,
        user_title: str | None = None,
        user_msg: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.type, self.subcode = code, message, type_, subcode
        self.status, self.transient, self.headers = status, transient, headers or {}
        self.user_title, self.user_msg = user_title, user_msg

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            err["error_subcode"] = self.subcode
        if self.transient is not None:
            err["is_transient"] = self.transient
        if self.user_title:
            err["error_user_title"] = self.user_title
        if self.user_msg:
            err["error_user_msg"] = self.user_msg
        err["fbtrace_id"] = "A" + secrets.token_urlsafe(15)[:20]
        return {"error": err}


def not_found(obj_id: str, method: str = "get") -> GraphError:
    return GraphError(
        100,
        f"Unsupported {method} request. Object with ID '{obj_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation. Please read the "
        "Graph API documentation at https://developers.facebook.com/docs/graph-api",
        type_="GraphMethodException",
        subcode=33,
    )


def param_error(message: str) -> GraphError:
    return GraphError(100, f"(#100) {message}")


@dataclass
class Faults:
    error_rate: float = 0.0  # transient code 1/2, HTTP 500, is_transient true
    latency: float = 0.0  # seconds added to every Graph request
    empty_page_rate: float = 0.0  # /leads page returned empty but still with paging.next
    seed: int = 0
    # webhooks
    drop_rate: float = 0.0  # a notification never leaves
    duplicate_rate: float = 0.0  # a delivered notification is delivered again
    fail_first_n: int = 0  # first n attempts of every delivery fail as if the network did
    batch: bool = False  # changes queued together go out in one POST
    retry_schedule: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.5, 1.0, 2.0])


@dataclass
class FakePage:
    id: str
    name: str
    token: str
    business_id: str | None


@dataclass
class Token:
    value: str
    kind: str  # "page" | "system_user"
    scope_id: str  # page id or business id
    permissions: set[str]
    expired_subcode: int | None = None


class LeadIndex:
    """Lead ids of one form (or ad), newest first; keys (-created, -id) keep bisect simple.

    Newest first is what public code and Meta's examples show for /leads; not a documented
    guarantee (GUESS). New leads land at the front, so an `after` cursor stays valid.
    """

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def add(self, created: int, lead_id: str) -> None:
        bisect.insort(self.keys, (-created, -int(lead_id)))

    def window(
        self, gt: float | None, ge: float | None, lt: float | None, le: float | None
    ) -> tuple[int, int]:
        lo, hi = 0, len(self.keys)
        if lt is not None:  # created < lt  <=> -created > -lt
            lo = max(lo, bisect.bisect_right(self.keys, (-math.ceil(lt), _BIG)))
        if le is not None:
            lo = max(lo, bisect.bisect_left(self.keys, (-math.floor(le), -_BIG)))
        if gt is not None:
            hi = min(hi, bisect.bisect_left(self.keys, (-math.floor(gt), -_BIG)))
        if ge is not None:
            hi = min(hi, bisect.bisect_right(self.keys, (-math.ceil(ge), _BIG)))
        return lo, hi


def _cursor(key: tuple[int, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _uncursor(value: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        a, b = json.loads(raw)
        return int(a), int(b)
    except Exception as exc:
        raise param_error("Invalid cursor") from exc  # GUESS: exact text unknown


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(ts))


class _Webhooks:
    """Background sender: a heap of due deliveries, retried on the compressed schedule."""

    def __init__(self, graph: FakeGraph) -> None:
        self.graph = graph
        self.cond = threading.Condition()
        self.heap: list[tuple[float, int, dict[str, Any]]] = []
        self.pending: list[dict[str, Any]] = []  # fresh changes not yet batched
        self.in_flight = 0
        self.seq = 0
        self.stats: collections.Counter[str] = collections.Counter()
        self.http = requests.Session()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="fake-graph-webhooks", daemon=True)
        self.thread.start()

    def enqueue(self, page_id: str, value: dict[str, Any]) -> None:
        with self.cond:
            self.stats["queued"] += 1
            self.pending.append(
                {
                    "page_id": page_id,
                    "value": value,
                    "time": int(self.graph.clock()),
                    "queued_at": time.monotonic(),
                }
            )
            self.cond.notify_all()

    def _payload(self, changes: list[dict[str, Any]]) -> bytes:
        entries: dict[str, dict[str, Any]] = {}
        for ch in changes:
            entry = entries.setdefault(
                ch["page_id"], {"id": ch["page_id"], "time": ch["time"], "changes": []}
            )
            entry["changes"].append({"field": "leadgen", "value": ch["value"]})
        return json.dumps({"object": "page", "entry": list(entries.values())}).encode()

    def _schedule(self, body: bytes, attempt: int, delay: float) -> None:
        self.seq += 1
        heapq.heappush(
            self.heap, (time.monotonic() + delay, self.seq, {"body": body, "attempt": attempt})
        )

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.stopping:
                    # batch mode: let changes queued together (within 50 ms) coalesce
                    if self.pending and (
                        not self.graph.faults.batch
                        or time.monotonic() - self.pending[0]["queued_at"] >= 0.05
                    ):
                        self._take_pending()
                    now = time.monotonic()
                    if self.heap and self.heap[0][0] <= now:
                        break
                    self.cond.wait(0.05 if not self.heap else min(0.05, self.heap[0][0] - now))
                if self.stopping:
                    return
                _, _, item = heapq.heappop(self.heap)
                self.in_flight += 1
            try:
                self._attempt(item)
            finally:
                with self.cond:
                    self.in_flight -= 1
                    self.cond.notify_all()

    def _take_pending(self) -> None:
        faults, rng = self.graph.faults, self.graph._fault_rng
        changes, self.pending = self.pending, []
        kept = []
        for ch in changes:
            if rng.random() < faults.drop_rate:
                self.stats["dropped"] += 1
            else:
                kept.append(ch)
        groups = (
            [kept[i : i + 1000] for i in range(0, len(kept), 1000)]
            if faults.batch
            else [[ch] for ch in kept]
        )
        for group in groups:
            if group:
                self._schedule(self._payload(group), 0, 0.0)

    def _attempt(self, item: dict[str, Any]) -> None:
        graph, faults = self.graph, self.graph.faults
        url = graph._webhook_url
        body, attempt = item["body"], item["attempt"]
        self.stats["attempts"] += 1
        ok = False
        if url and attempt >= faults.fail_first_n:
            sig = hmac.new(graph.app_secret.encode(), body, hashlib.sha256).hexdigest()
            try:
                resp = self.http.post(
                    url,
                    data=body,
                    timeout=5,
                    headers={
                        "Content-Type": "application/json",
                        "X-Hub-Signature-256": f"sha256={sig}",
                        "User-Agent": "facebookexternalua",
                    },
                )
                ok = 200 <= resp.status_code < 300
            except requests.RequestException:
                ok = False
        with self.cond:
            if ok:
                self.stats["delivered"] += 1
                if not item.get("dup") and graph._fault_rng.random() < faults.duplicate_rate:
                    self.stats["duplicated"] += 1
                    self.seq += 1
                    heapq.heappush(
                        self.heap,
                        (
                            time.monotonic() + 0.01,
                            self.seq,
                            {"body": body, "attempt": 0, "dup": True},
                        ),
                    )
                return
            self.stats["failed_attempts"] += 1
            schedule = faults.retry_schedule
            if attempt < len(schedule):
                self.seq += 1
                heapq.heappush(
                    self.heap,
                    (
                        time.monotonic() + schedule[attempt],
                        self.seq,
                        {**item, "attempt": attempt + 1},
                    ),
                )
            else:  # Meta gives up after 36 h; here after the schedule
                self.stats["given_up"] += 1

    def flush(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.pending or self.heap or self.in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("webhook deliveries still queued")
                self.cond.wait(min(left, 0.05))

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.thread.join(timeout=2)
        self.http.close()


class FakeGraph:
    def __init__(
        self,
        *,
        app_id: str = "100000000000001",
        app_secret: str = "fake-app-secret",
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        require_appsecret_proof: bool = True,
        max_page_size: int = 100,
    ) -> None:
        self.app_id, self.app_secret, self.seed, self.clock = app_id, app_secret, seed, clock
        self.require_appsecret_proof, self.max_page_size = require_appsecret_proof, max_page_size
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self._data_rng = random.Random(f"data:{seed}")
        self.faults = Faults(seed=seed)
        self._fault_rng = random.Random(f"faults:{seed}")
        self.objects: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, Token] = {}
        self.leads: dict[str, dict[str, str]] = {}  # lead id -> field -> JSON fragment
        self.lead_meta: dict[str, dict[str, Any]] = {}
        self.indexes: dict[str, LeadIndex] = collections.defaultdict(LeadIndex)
        self.installed: dict[str, list[str]] = {}  # page id -> subscribed fields
        self._webhook_url: str | None = None
        self._verify_token = "verify-me"
        self.throttles: dict[str, tuple[float, int, int]] = {}  # scope -> (until, code, regain)
        self.budgets: dict[str, int] = {}
        self.usage: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        # Custom audiences and Conversions API datasets (fake_audiences.py).
        self.audiences = Audiences(clock, self._new_id, self._lead_created)
        self._server: ThreadingHTTPServer | None = None
        self._webhooks: _Webhooks | None = None
        self.base_url = ""

    # ---------------------------------------------------------------- server
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        handler = type("Handler", (_Handler,), {"graph": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-graph",
            daemon=True,
        ).start()
        self._webhooks = _Webhooks(self)
        self.base_url = f"http://{host}:{self._server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        if self._webhooks:
            self._webhooks.stop()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGraph:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- world
    def _new_id(self, digits: int = 15) -> str:
        while True:
            new = str(self._rng.randrange(10 ** (digits - 1), 10**digits))
            if new not in self.objects and new not in self.leads:
                return new

    def _new_token(self, prefix: str) -> str:
        return prefix + "".join(
            self._rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
            for _ in range(120)
        )

    def add_page(
        self, name: str = "Fake Page", page_id: str | None = None, business_id: str | None = None
    ) -> FakePage:
        with self.lock:
            page_id = page_id or self._new_id()
            token = self._new_token("EAAP")
            self.objects[page_id] = {
                "kind": "page",
                "id": page_id,
                "name": name,
                "page_id": page_id,
                "business_id": business_id,
            }
            self.tokens[token] = Token(token, "page", page_id, set(PAGE_PERMISSIONS))
            return FakePage(page_id, name, token, business_id)

    def add_system_user_token(self, business_id: str, permissions: set[str] | None = None) -> str:
        with self.lock:
            token = self._new_token("EAAS")
            perms = set(PAGE_PERMISSIONS if permissions is None else permissions)
            self.tokens[token] = Token(token, "system_user", business_id, perms)
            return token

    def add_form(
        self,
        page_id: str,
        name: str = "Lead form",
        form_id: str | None = None,
        status: str = "ACTIVE",
        questions: list[dict[str, Any]] | None = None,
    ) -> str:
        with self.lock:
            page = self.objects[page_id]
            form_id = form_id or self._new_id()
            if questions is None:
                custom = "jakiego_produktu_szukasz" if self._data_rng.random() < 0.3 else "budget"
                questions = [
                    {"key": "full_name", "label": "Full name", "type": "FULL_NAME"},
                    {"key": "email", "label": "Email", "type": "EMAIL"},
                    {"key": "phone_number", "label": "Phone number", "type": "PHONE"},
                    {"key": "city", "label": "City", "type": "CITY"},
                    {
                        "key": custom,
                        "label": custom.replace("_", " ").capitalize() + "?",
                        "type": "CUSTOM",
                        "options": [
                            {"key": f"opt{i}", "value": v}
                            for i, v in enumerate(fake_data.CUSTOM_QUESTIONS[custom])
                        ],
                    },
                ]
            for i, q in enumerate(questions):
                q.setdefault("id", str(int(form_id) % 10**12 + i))
            self.objects[form_id] = {
                "kind": "form",
                "id": form_id,
                "name": name,
                "status": status,
                "locale": "en_US",
                "questions": questions,
                "page_id": page_id,
                "business_id": page["business_id"],
                "created_time": int(self.clock()),
                "test_lead": None,
            }
            return form_id

    def add_campaign(
        self,
        page_id: str,
        name: str = "Lead campaign",
        objective: str = "OUTCOME_LEADS",
        campaign_id: str | None = None,
    ) -> str:
        with self.lock:
            page = self.objects[page_id]
            cid = campaign_id or self._new_id(17)
            self.objects[cid] = {
                "kind": "campaign",
                "id": cid,
                "name": name,
                "objective": objective,
                "status": "ACTIVE",
                "page_id": page_id,
                "business_id": page["business_id"],
            }
            return cid

    def add_adset(
        self,
        campaign_id: str,
        name: str = "Ad set",
        interests: list[dict[str, str]] | None = None,
        adset_id: str | None = None,
    ) -> str:
        with self.lock:
            camp = self.objects[campaign_id]
            sid = adset_id or self._new_id(17)
            targeting = {
                "geo_locations": {"countries": ["MY"]},
                "age_min": 18,
                "flexible_spec": [{"interests": list(interests or [])}],
            }
            self.objects[sid] = {
                "kind": "adset",
                "id": sid,
                "name": name,
                "targeting": targeting,
                "campaign_id": campaign_id,
                "status": "ACTIVE",
                "page_id": camp["page_id"],
                "business_id": camp["business_id"],
            }
            return sid

    def add_ad(
        self, adset_id: str, name: str = "Ad", form_id: str | None = None, ad_id: str | None = None
    ) -> str:
        with self.lock:
            adset = self.objects[adset_id]
            aid = ad_id or self._new_id(17)
            self.objects[aid] = {
                "kind": "ad",
                "id": aid,
                "name": name,
                "adset_id": adset_id,
                "campaign_id": adset["campaign_id"],
                "status": "ACTIVE",
                "form_id": form_id,
                "page_id": adset["page_id"],
                "business_id": adset["business_id"],
            }
            return aid

    def add_lead(
        self,
        form_id: str,
        field_data: dict[str, str | list[str]],
        *,
        created_time: float | None = None,
        ad_id: str | None = None,
        platform: str = "fb",
        is_organic: bool | None = None,
        custom_disclaimer_responses: list[dict[str, Any]] | None = None,
        notify: bool = True,
        _test: bool = False,
    ) -> str:
        with self.lock:
            form = self.objects[form_id]
            lead_id = self._new_id(16 if self._rng.random() < 0.7 else 15)
            created = int(self.clock() if created_time is None else created_time)
            organic = (ad_id is None) if is_organic is None else is_organic
            doc: dict[str, Any] = {
                "id": lead_id,
                "created_time": _iso(created),
                "field_data": [
                    {"name": k, "values": v if isinstance(v, list) else [v]}
                    for k, v in field_data.items()
                ],
                "form_id": form_id,
                "is_organic": organic,
                "platform": platform,
            }
            if ad_id and not organic:
                ad = self.objects[ad_id]
                adset, camp = self.objects[ad["adset_id"]], self.objects[ad["campaign_id"]]
                doc.update(
                    ad_id=ad_id,
                    ad_name=ad["name"],
                    adset_id=adset["id"],
                    adset_name=adset["name"],
                    campaign_id=camp["id"],
                    campaign_name=camp["name"],
                )
            if custom_disclaimer_responses is not None:
                doc["custom_disclaimer_responses"] = custom_disclaimer_responses
            self.leads[lead_id] = {k: f'"{k}":{json.dumps(v)}' for k, v in doc.items()}
            self.lead_meta[lead_id] = {
                "form_id": form_id,
                "page_id": form["page_id"],
                "business_id": form["business_id"],
                "created": created,
                "ad_id": doc.get("ad_id"),
                "test": _test,
            }
            self.indexes[form_id].add(created, lead_id)
            if doc.get("ad_id"):
                self.indexes[doc["ad_id"]].add(created, lead_id)
            if notify:
                self._notify(form["page_id"], lead_id, form_id, doc.get("ad_id"), created)
            return lead_id

    def generate_leads(
        self,
        form_id: str,
        n: int,
        *,
        start: float,
        end: float,
        dup_rate: float = 0.2,
        bad_rate: float = 0.03,
        ads: list[str] | None = None,
        notify: bool = False,
    ) -> list[str]:
        with self.lock:
            rng = self._data_rng
            form = self.objects[form_id]
            keys = [q["key"] for q in form["questions"]]
            custom = {
                q["key"]: [o["value"] for o in q.get("options", [])] or ["yes", "no"]
                for q in form["questions"]
                if q.get("type") == "CUSTOM"
            }
            if ads is None:
                ads = [
                    o["id"]
                    for o in self.objects.values()
                    if o["kind"] == "ad" and o.get("form_id") == form_id
                ]
            people: list[fake_data.Person] = []
            times = sorted(rng.uniform(start, end) for _ in range(n))
            ids = []
            for ts in times:
                again = bool(people) and rng.random() < dup_rate
                person = rng.choice(people) if again else fake_data.new_person(rng)
                if not again:
                    people.append(person)
                answers = fake_data.field_data(
                    person, keys, custom, rng, again=again, bad=rng.random() < bad_rate
                )
                ad = rng.choice(ads) if ads and rng.random() > 0.15 else None
                disclaimers = (
                    [{"checkbox_key": "marketing_optin", "is_checked": rng.random() < 0.6}]
                    if rng.random() < 0.3
                    else None
                )
                ids.append(
                    self.add_lead(
                        form_id,
                        answers,
                        created_time=ts,
                        ad_id=ad,
                        platform="ig" if rng.random() < 0.3 else "fb",
                        custom_disclaimer_responses=disclaimers,
                        notify=notify,
                    )
                )
            return ids

    # ---------------------------------------------------------------- tokens, faults
    def expire_token(self, token: str, subcode: int = 463) -> None:
        with self.lock:
            self.tokens[token].expired_subcode = subcode

    def revoke_permission(self, token: str, permission: str) -> None:
        with self.lock:
            self.tokens[token].permissions.discard(permission)

    def set_faults(self, **changes: Any) -> None:
        known = {f.name for f in fields(Faults)}
        with self.lock:
            for key, value in changes.items():
                if key not in known:
                    raise KeyError(key)
                setattr(self.faults, key, value)
            if "seed" in changes:
                self._fault_rng.seed(f"faults:{changes['seed']}")

    def throttle(
        self, scope_id: str, seconds: float, *, code: int = 80005, regain_minutes: int = 1
    ) -> None:
        """Throttle a Page or business id for `seconds`; `scope_id` "app" throttles the
        whole app (every token, every Page: pass code 4 or 17; X-App-Usage shows 100)."""
        with self.lock:
            self.throttles[scope_id] = (self.clock() + seconds, code, regain_minutes)

    def set_budget(self, scope_id: str, calls_per_hour: int) -> None:
        """Calls per rolling hour of a Page or business ("app": of the whole app, shown
        in X-App-Usage, code 4 past it)."""
        with self.lock:
            self.budgets[scope_id] = calls_per_hour

    # ---------------------------------------------------------------- webhooks
    def subscribe_webhook(
        self, url: str, *, verify_token: str = "verify-me", verify: bool = False
    ) -> None:
        """App-level subscription (object page, field leadgen). verify=True does the GET
        handshake first, as Meta does when the callback URL is saved."""
        if verify and not self.verify_webhook_endpoint(url, verify_token):
            raise ValueError("callback URL did not echo hub.challenge")
        with self.lock:
            self._webhook_url, self._verify_token = url, verify_token

    def install_app(self, page_id: str, fields_: list[str] | None = None) -> None:
        with self.lock:
            self.installed[page_id] = list(fields_ or ["leadgen"])

    def _notify(
        self, page_id: str, lead_id: str, form_id: str, ad_id: str | None, created: int
    ) -> None:
        if not self._webhook_url or "leadgen" not in self.installed.get(page_id, []):
            return
        value: dict[str, Any] = {"leadgen_id": lead_id, "page_id": page_id, "form_id": form_id}
        if ad_id:  # GUESS: organic leads carry no ad_id/adgroup_id in the ping
            value.update(adgroup_id=ad_id, ad_id=ad_id)
        value["created_time"] = created
        if self._webhooks:
            self._webhooks.enqueue(page_id, value)

    def flush_webhooks(self, timeout: float = 10) -> None:
        if self._webhooks:
            self._webhooks.flush(timeout)

    def verify_webhook_endpoint(self, url: str, verify_token: str) -> bool:
        challenge = str(self._rng.randrange(10**9, 2 * 10**9))
        try:
            resp = requests.get(
                url,
                timeout=5,
                params={
                    "hub.mode": "subscribe",
                    "hub.challenge": challenge,
                    "hub.verify_token": verify_token,
                },
            )
        except requests.RequestException:
            return False
        return resp.status_code == 200 and resp.text.strip() == challenge

    # ---------------------------------------------------------------- accounting
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": {f"{m} {k}": n for (m, k), n in sorted(self.calls.items())},
                "total_calls": self.total_calls(),
                "webhooks": dict(self._webhooks.stats) if self._webhooks else {},
                "leads": len(self.leads),
            }

    def world(self) -> dict[str, Any]:
        with self.lock:
            pages = [
                {
                    "id": o["id"],
                    "name": o["name"],
                    "business_id": o["business_id"],
                    "token": next(
                        (
                            t.value
                            for t in self.tokens.values()
                            if t.kind == "page" and t.scope_id == o["id"]
                        ),
                        None,
                    ),
                    "app_installed": o["id"] in self.installed,
                }
                for o in self.objects.values()
                if o["kind"] == "page"
            ]
            forms = [
                {
                    "id": o["id"],
                    "name": o["name"],
                    "page_id": o["page_id"],
                    "status": o["status"],
                    "leads_count": len(self.indexes[o["id"]].keys),
                }
                for o in self.objects.values()
                if o["kind"] == "form"
            ]
            ads = [
                {
                    "id": o["id"],
                    "name": o["name"],
                    "adset_id": o["adset_id"],
                    "campaign_id": o["campaign_id"],
                    "form_id": o["form_id"],
                }
                for o in self.objects.values()
                if o["kind"] == "ad"
            ]
            return {
                "app_id": self.app_id,
                "app_secret": self.app_secret,
                "base_url": self.base_url,
                "pages": pages,
                "forms": forms,
                "ads": ads,
                "system_user_tokens": [
                    t.value for t in self.tokens.values() if t.kind == "system_user"
                ],
            }

    # ---------------------------------------------------------------- Graph logic
    def _auth(self, params: dict[str, str]) -> Token:
        raw = params.get("access_token")
        if not raw:
            raise GraphError(104, "An access token is required to request this resource.")
        token = self.tokens.get(raw)
        if token is None:  # real text varies: "Malformed access token" / "Invalid OAuth ..."
            raise GraphError(
                190, "Invalid OAuth access token - Cannot parse access token", subcode=467
            )
        if token.expired_subcode is not None:
            msg = {
                460: "Error validating access token: The session has been invalidated because "
                "the user changed their password or Facebook has changed the session "
                "for security reasons.",
                458: f"Error validating access token: The user has not authorized "
                f"application {self.app_id}.",
            }.get(token.expired_subcode, "Error validating access token: Session has expired.")
            raise GraphError(190, msg, subcode=token.expired_subcode)
        got = params.get("appsecret_proof", "")
        if self.require_appsecret_proof or got:  # a proof that is sent is always checked
            want = hmac.new(self.app_secret.encode(), raw.encode(), hashlib.sha256).hexdigest()
            if not got:
                raise GraphError(
                    100,
                    "API calls from the server require an appsecret_proof argument",
                    type_="GraphMethodException",
                )
            if not hmac.compare_digest(got, want):
                raise GraphError(
                    100,
                    "Invalid appsecret_proof provided in the API argument",
                    type_="GraphMethodException",
                )
        return token

    def _visible(self, token: Token, obj: dict[str, Any]) -> bool:
        if token.kind == "page":
            return bool(obj["page_id"] == token.scope_id)
        return obj.get("business_id") is not None and obj["business_id"] == token.scope_id

    def _lookup(self, token: Token, obj_id: str, method: str = "get") -> dict[str, Any]:
        obj = self.objects.get(obj_id)
        if obj is None and obj_id in self.lead_meta:
            obj = {"kind": "lead", "id": obj_id, **self.lead_meta[obj_id]}
        if obj is None or not self._visible(token, obj):
            raise not_found(obj_id, method)
        return obj

    def _scopes(self, obj: dict[str, Any] | None) -> list[str]:
        if obj is None:
            return []
        return [s for s in (obj.get("page_id"), obj.get("business_id")) if s]

    def _usage(self, scopes: list[str]) -> tuple[dict[str, str], GraphError | None]:
        """Count the call per scope; headers with current percentages; throttle error if any."""
        now = self.clock()
        buc: dict[str, list[dict[str, Any]]] = {}
        error = None
        for scope in scopes:
            window = self.usage[scope]
            window.append(now)
            while window and window[0] <= now - 3600:
                window.popleft()
            budget = self.budgets.get(scope)
            pct = min(100, len(window) * 100 // budget) if budget else min(99, len(window) // 480)
            regain = 0
            until, code, regain_minutes = self.throttles.get(scope, (0.0, 0, 0))
            if until > now:
                pct, regain = 100, regain_minutes
                error = error or (code, regain)
            elif budget and len(window) > budget:
                pct, regain = 100, max(1, math.ceil((window[0] + 3600 - now) / 60))
                error = error or (80005, regain)
            buc[scope] = [
                {
                    "type": "leadgen",
                    "call_count": pct,
                    "total_cputime": max(1, pct // 2),
                    "total_time": max(1, pct // 2),
                    "estimated_time_to_regain_access": regain,
                    "ads_api_access_tier": "standard_access",
                }
            ]
        # The app-level limit (reference §D: code 4, X-App-Usage) over every call.
        app_window = self.usage["app"]
        app_window.append(now)
        while app_window and app_window[0] <= now - 3600:
            app_window.popleft()
        total = self.total_calls()
        app_budget = self.budgets.get("app")
        app_pct = min(100, len(app_window) * 100 // app_budget) if app_budget else None
        app_until, app_code, _ = self.throttles.get("app", (0.0, 0, 0))
        if app_until > now or (app_budget and len(app_window) > app_budget):
            app_pct = 100
            error = (app_code if app_until > now else 4, 0)  # the app's limit comes first
        headers = {
            "X-App-Usage": json.dumps(
                {
                    "call_count": min(100, total // 2000) if app_pct is None else app_pct,
                    "total_cputime": min(100, total // 4000) if app_pct is None else app_pct // 2,
                    "total_time": min(100, total // 4000) if app_pct is None else app_pct // 2,
                }
            )
        }
        if buc:
            headers["X-Business-Use-Case-Usage"] = json.dumps(buc)
        if error:
            code, _ = error
            return headers, GraphError(
                code, THROTTLE_MESSAGES.get(code, f"(#{code}) Rate limited"), headers=headers
            )
        return headers, None

    @staticmethod
    def _fields(params: dict[str, str], kind: str) -> list[str]:
        raw = params.get("fields")
        if not raw:
            return list(DEFAULT_FIELDS[kind])
        return [f.split("{")[0].strip() for f in raw.split(",") if f.strip()]

    def _lead_json(self, lead_id: str, wanted: list[str], ads_visible: bool) -> str:
        frags = self.leads[lead_id]
        out = []
        for f in wanted:
            if f not in LEAD_FIELDS:
                raise param_error(f"Tried accessing nonexisting field ({f}) on node type (Lead)")
            if f in frags and (ads_visible or f not in AD_FIELDS):
                out.append(frags[f])
        return "{" + ",".join(out) + "}"

    def _node_json(self, obj: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
        kind = obj["kind"]
        if kind == "form":
            obj = {
                **obj,
                "leads_count": len(self.indexes[obj["id"]].keys),
                "created_time": _iso(obj["created_time"]),
            }
        allowed = {
            "page": {"id", "name"},
            "form": {
                "id",
                "name",
                "status",
                "locale",
                "questions",
                "leads_count",
                "created_time",
                "page_id",
            },
            "ad": {"id", "name", "adset_id", "campaign_id", "status"},
            "adset": {"id", "name", "targeting", "campaign_id", "status"},
            "campaign": {"id", "name", "objective", "status"},
        }[kind]
        node_type = {"form": "LeadgenForm", "adset": "AdSet"}.get(kind, kind.capitalize())
        out = {}
        for f in wanted:
            if f not in allowed:
                raise param_error(
                    f"Tried accessing nonexisting field ({f}) on node type ({node_type})"
                )
            if obj.get(f) is not None:
                out[f] = obj[f]
        return out

    def _leads_page(
        self, token: Token, index_id: str, params: dict[str, str], self_url: str
    ) -> str:
        if "leads_retrieval" not in token.permissions:
            raise GraphError(200, "(#200) Requires leads_retrieval permission to manage the object")
        wanted = self._fields(params, "lead")
        ads_visible = bool({"ads_management", "ads_read"} & token.permissions)
        bounds: dict[str, float | None] = dict.fromkeys(FILTER_OPS)
        if params.get("filtering"):
            try:
                rules = json.loads(params["filtering"])
                assert isinstance(rules, list)
            except Exception as exc:
                raise param_error("param filtering must be an array.") from exc
            for rule in rules:
                if not isinstance(rule, dict) or rule.get("field") != "time_created":
                    raise param_error(
                        f"Filtering field {rule.get('field') if isinstance(rule, dict) else rule}"
                        " is invalid."
                    )
                op = rule.get("operator")
                if op not in FILTER_OPS:
                    raise param_error(f"Filtering operator {op} is invalid for field time_created.")
                try:
                    value: Any = rule.get("value")
                    bounds[op] = float(value)
                except (TypeError, ValueError) as exc:
                    raise param_error("Filtering value must be a unix timestamp.") from exc
        try:
            limit = int(params.get("limit", 25))
        except ValueError as exc:
            raise param_error("param limit must be a non-negative integer.") from exc
        limit = max(1, min(limit, self.max_page_size))
        index = self.indexes[index_id]
        lo, hi = index.window(
            bounds["GREATER_THAN"],
            bounds["GREATER_THAN_OR_EQUAL"],
            bounds["LESS_THAN"],
            bounds["LESS_THAN_OR_EQUAL"],
        )
        keys = index.keys
        if params.get("before"):
            end = min(hi, bisect.bisect_left(keys, _uncursor(params["before"])))
            start = max(lo, end - limit)
        else:
            start = lo
            if params.get("after"):
                start = max(lo, bisect.bisect_right(keys, _uncursor(params["after"])))
            end = min(hi, start + limit)
        empty = (
            self.faults.empty_page_rate and self._fault_rng.random() < self.faults.empty_page_rate
        )
        if empty:  # Meta: a page may be empty yet carry `next`; resume where we stand
            here = _cursor(keys[start - 1]) if start > 0 else _cursor((-_BIG, -_BIG))
            page: list[tuple[int, int]] = []
            cursors, has_next = {"before": here, "after": here}, True
        else:
            page = keys[start:end] if end > start else []
            has_next = end < hi
            cursors = {"before": _cursor(page[0]), "after": _cursor(page[-1])} if page else {}
        data = ",".join(self._lead_json(str(-k[1]), wanted, ads_visible) for k in page)
        paging: dict[str, Any] = {}
        if cursors:
            paging["cursors"] = cursors
            if has_next:
                q = {k: v for k, v in params.items() if k not in ("before", "after", "summary")}
                q["limit"], q["after"] = str(limit), cursors["after"]
                paging["next"] = f"{self_url}?{urllib.parse.urlencode(q)}"
            if start > lo and page:
                q = {k: v for k, v in params.items() if k not in ("before", "after", "summary")}
                q["limit"], q["before"] = str(limit), cursors["before"]
                paging["previous"] = f"{self_url}?{urllib.parse.urlencode(q)}"
        # `summary=true` (added by the SDK Cursor) is accepted and ignored: GUESS whether
        # /leads honours it.
        tail = f',"paging":{json.dumps(paging)}' if paging else ""
        return f'{{"data":[{data}]{tail}}}'

    def _simple_edge(
        self, items: list[dict[str, Any]], params: dict[str, str], self_url: str
    ) -> dict[str, Any]:
        """Offset-backed cursor paging for the small edges (forms, apps, accounts)."""
        limit = max(1, min(int(params.get("limit", 25) or 25), self.max_page_size))
        start = int(_uncursor(params["after"])[0]) + 1 if params.get("after") else 0
        page = items[start : start + limit]
        out: dict[str, Any] = {"data": page}
        if page:
            out["paging"] = {
                "cursors": {
                    "before": _cursor((start, 0)),
                    "after": _cursor((start + len(page) - 1, 0)),
                }
            }
            if start + limit < len(items):
                q = {k: v for k, v in params.items() if k not in ("before", "after", "summary")}
                q["after"] = out["paging"]["cursors"]["after"]
                out["paging"]["next"] = f"{self_url}?{urllib.parse.urlencode(q)}"
        return out

    def handle_graph(
        self, method: str, parts: list[str], params: dict[str, str], self_url: str
    ) -> tuple[int, dict[str, str], bytes]:
        headers: dict[str, str] = {}
        kind = "unknown"
        try:
            with self.lock:
                target_id = parts[0] if parts else ""
                obj = self.objects.get(target_id)
                if obj is None and target_id in self.lead_meta:
                    obj = {"kind": "lead", **self.lead_meta[target_id]}
                kind = parts[1] if len(parts) > 1 else (obj["kind"] if obj else "unknown")
                self.calls[(method, kind)] += 1
                token = self._auth(params)
                if target_id == "me" and token.kind == "page":
                    parts = [token.scope_id, *parts[1:]]
                    obj = self.objects[token.scope_id]
                visible = obj is not None and self._visible(token, obj)
                headers, throttled = self._usage(self._scopes(obj) if visible else [])
                if throttled:
                    raise throttled
                if self.faults.error_rate and self._fault_rng.random() < self.faults.error_rate:
                    code = self._fault_rng.choice([1, 2])
                    raise GraphError(
                        code,
                        "An unknown error occurred"
                        if code == 1
                        else "An unexpected error has occurred. Please retry your request later.",
                        status=500,
                        transient=True,
                    )
                body = self._route(method, token, parts, params, self_url)
            status = 200
        except GraphError as err:
            status, body = err.status, json.dumps(err.body())
            headers = {**headers, **err.headers}
        except Exception as exc:  # a bug in the fake: answer like Graph's code 1, keep serving
            bug = GraphError(1, f"An unknown error occurred ({exc!r})", status=500, transient=True)
            status, body = bug.status, json.dumps(bug.body())
        if self.faults.latency:
            time.sleep(self.faults.latency)
        return status, headers, body.encode() if isinstance(body, str) else body

    def _route(
        self, method: str, token: Token, parts: list[str], params: dict[str, str], self_url: str
    ) -> str:
        if parts == ["me", "accounts"] and method == "GET":
            pages = [
                o for o in self.objects.values() if o["kind"] == "page" and self._visible(token, o)
            ]
            items = [
                {
                    "id": p["id"],
                    "name": p["name"],
                    "tasks": ["ADVERTISE", "ANALYZE"],
                    "access_token": next(
                        t.value
                        for t in self.tokens.values()
                        if t.kind == "page" and t.scope_id == p["id"]
                    ),
                }
                for p in pages
            ]
            return json.dumps(self._simple_edge(items, params, self_url))
        if not parts or len(parts) > 2:
            raise GraphError(2500, "Unknown path components: /" + "/".join(parts[1:]))
        if self.audiences.handles(parts[0], parts[1] if len(parts) > 1 else None):
            return self._audience_route(method, token, parts, params)
        obj_id = parts[0]
        obj = self._lookup(token, obj_id, method.lower())
        kind = obj["kind"]
        if len(parts) == 1:
            if method == "GET":
                if kind == "lead":
                    if "leads_retrieval" not in token.permissions:
                        raise GraphError(
                            200, "(#200) Requires leads_retrieval permission to manage the object"
                        )
                    ads_visible = bool({"ads_management", "ads_read"} & token.permissions)
                    return self._lead_json(obj_id, self._fields(params, "lead"), ads_visible)
                return json.dumps(self._node_json(obj, self._fields(params, kind)))
            if method == "DELETE" and kind == "lead" and obj["test"]:
                self._delete_lead(obj_id)
                return '{"success":true}'
            raise not_found(obj_id, method.lower())
        edge = parts[1]
        if edge == "leads" and kind in ("form", "ad") and method == "GET":
            return self._leads_page(token, obj_id, params, self_url)
        if edge == "leadgen_forms" and kind == "page" and method == "GET":
            wanted = self._fields(params, "form")
            forms = [
                self._node_json(o, wanted)
                for o in self.objects.values()
                if o["kind"] == "form" and o["page_id"] == obj_id
            ]
            return json.dumps(self._simple_edge(forms, params, self_url))
        if edge == "subscribed_apps" and kind == "page":
            return self._subscribed_apps(method, token, obj_id, params, self_url)
        if edge == "test_leads" and kind == "form":
            return self._test_leads(method, obj, params, self_url)
        raise GraphError(2500, f"Unknown path components: /{edge}")

    def _audience_route(
        self, method: str, token: Token, parts: list[str], params: dict[str, str]
    ) -> str:
        if token.kind != "system_user" or "ads_management" not in token.permissions:
            raise GraphError(200, "(#200) Requires ads_management permission to manage the object")
        try:
            result = self.audiences.route(
                method, parts[0], parts[1] if len(parts) > 1 else None, params
            )
        except AudienceError as err:
            raise GraphError(
                err.code, err.message, subcode=err.subcode, status=err.status
            ) from None
        return json.dumps(result)

    def _lead_created(self, lead_id: str) -> int | None:
        meta = self.lead_meta.get(lead_id)
        return int(meta["created"]) if meta is not None and "created" in meta else None

    def _subscribed_apps(
        self, method: str, token: Token, page_id: str, params: dict[str, str], self_url: str
    ) -> str:
        if method == "GET":
            apps = (
                [
                    {
                        "category": "Business",
                        "link": "https://example.invalid/",
                        "name": "leadsync (fake)",
                        "id": self.app_id,
                        "subscribed_fields": self.installed[page_id],
                    }
                ]
                if page_id in self.installed
                else []
            )
            return json.dumps(self._simple_edge(apps, params, self_url))
        if method == "POST":
            if token.kind != "page":  # the reference: installed with the Page token
                raise GraphError(
                    210, "(#210) A page access token is required to request this resource."
                )
            if "pages_manage_metadata" not in token.permissions:
                raise GraphError(
                    200, "(#200) Requires pages_manage_metadata permission to manage the object"
                )
            wanted = [f for f in params.get("subscribed_fields", "").split(",") if f]
            if not wanted:
                raise param_error("The parameter subscribed_fields is required.")
            self.installed[page_id] = wanted
            return '{"success":true}'
        if method == "DELETE":
            self.installed.pop(page_id, None)
            return '{"success":true}'
        raise not_found(page_id, method.lower())

    def _test_leads(
        self, method: str, form: dict[str, Any], params: dict[str, str], self_url: str
    ) -> str:
        if method == "GET":
            lead = form["test_lead"]
            items = (
                [json.loads(self._lead_json(lead, list(DEFAULT_FIELDS["lead"]), False))]
                if lead
                else []
            )
            return json.dumps(self._simple_edge(items, params, self_url))
        if method != "POST":
            raise not_found(form["id"], method.lower())
        # Meta (testing-troubleshooting guide): one test lead per form; delete it to make
        # another. The error code/text for a second one is a GUESS.
        if form["test_lead"]:
            raise GraphError(
                100,
                "(#100) Only one test lead can be created per form. Delete the "
                "existing test lead first.",
                user_title="Test lead already exists",
                user_msg="Delete the existing test lead to create a new one.",
            )
        answers: dict[str, str | list[str]] = {}
        if params.get("field_data"):
            try:
                items = json.loads(params["field_data"])
                for item in items:
                    answers[item["name"]] = list(item["values"])
            except Exception as exc:
                raise param_error("param field_data must be an array of {name, values}.") from exc
        else:  # dummy answers, shaped like the testing tool's (recollection, GUESS)
            answers = {
                q["key"]: (
                    "test@fb.com"
                    if q["key"] == "email"
                    else f"<test lead: dummy data for {q['key']}>"
                )
                for q in form["questions"]
            }
        disclaimers = (
            json.loads(params["custom_disclaimer_responses"])
            if params.get("custom_disclaimer_responses")
            else None
        )
        # Test leads are organic (no ad), per the same guide.
        lead_id = self.add_lead(
            form["id"],
            answers,
            custom_disclaimer_responses=disclaimers,
            is_organic=True,
            _test=True,
        )
        form["test_lead"] = lead_id
        return json.dumps({"id": lead_id})

    def _delete_lead(self, lead_id: str) -> None:
        meta = self.lead_meta.pop(lead_id)
        self.leads.pop(lead_id)
        for index_id in (meta["form_id"], meta["ad_id"]):
            if index_id:
                index = self.indexes[index_id]
                index.keys.remove((-meta["created"], -int(lead_id)))
        form = self.objects[meta["form_id"]]
        if form["test_lead"] == lead_id:
            form["test_lead"] = None

    # ---------------------------------------------------------------- control routes
    def handle_control(self, method: str, parts: list[str], body: dict[str, Any]) -> Any:
        route = parts[0] if parts else ""
        if method == "GET" and route == "stats":
            return self.stats()
        if method == "GET" and route == "world":
            return self.world()
        if method == "POST" and route == "generate":
            ids = self.generate_leads(
                body["form_id"],
                int(body["n"]),
                start=float(body["start"]),
                end=float(body["end"]),
                notify=bool(body.get("notify")),
                dup_rate=float(body.get("dup_rate", 0.2)),
                bad_rate=float(body.get("bad_rate", 0.03)),
                ads=body.get("ads"),
            )
            return {"count": len(ids), "ids": ids}
        if method == "POST" and route == "lead":
            return {"id": self.add_lead(body.pop("form_id"), body.pop("field_data"), **body)}
        if method == "POST" and route == "faults":
            self.set_faults(**body)
            return asdict(self.faults)
        if method == "GET" and route == "faults":
            return asdict(self.faults)
        if method == "POST" and route == "throttle":
            self.throttle(
                body["scope_id"],
                float(body["seconds"]),
                code=int(body.get("code", 80005)),
                regain_minutes=int(body.get("regain_minutes", 1)),
            )
            return {"success": True}
        if method == "POST" and route == "budget":
            self.set_budget(body["scope_id"], int(body["calls_per_hour"]))
            return {"success": True}
        if method == "POST" and route == "expire_token":
            self.expire_token(body["token"], int(body.get("subcode", 463)))
            return {"success": True}
        if method == "POST" and route == "subscribe":
            self.subscribe_webhook(body["url"], verify_token=body.get("verify_token", "verify-me"))
            for page_id in body.get("install", []):
                self.install_app(page_id)
            return {"success": True}
        if method == "POST" and route == "flush":
            self.flush_webhooks(float(body.get("timeout", 10)))
            return {"success": True}
        if method == "POST" and route == "reset_calls":
            self.reset_calls()
            return {"success": True}
        raise KeyError(route)


class _Handler(BaseHTTPRequestHandler):
    graph: FakeGraph
    protocol_version = "HTTP/1.1"
    server_version = "FakeGraph/1.0"

    def setup(self) -> None:
        super().setup()
        # headers and body go out as two writes; without NODELAY, Nagle + delayed ACK
        # would add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        ctype: str = "application/json; charset=UTF-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        if method == "DELETE" and len(self.path) > DELETE_URL_LIMIT:
            # §E: the SDK puts a DELETE's payload in the URL and Graph drops the
            # connection near 300 rows (RemoteDisconnected). GUESS: the exact length.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = [p for p in url.path.split("/") if p]
        if parts and parts[0] == "_fake":
            try:
                body = json.loads(raw) if raw else {}
                result = self.graph.handle_control(method, parts[1:], body)
                self._send(200, json.dumps(result).encode())
            except Exception as exc:
                self._send(400, json.dumps({"error": repr(exc)}).encode())
            return
        prefix = ""
        if parts and parts[0].startswith("v") and parts[0][1:].replace(".", "").isdigit():
            prefix = "/" + parts.pop(0)
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        ctype = self.headers.get("Content-Type", "")
        if raw and "json" in ctype:
            with contextlib.suppress(Exception):
                params.update(
                    {
                        k: v if isinstance(v, str) else json.dumps(v)
                        for k, v in json.loads(raw).items()
                    }
                )
        elif raw:
            params.update(
                urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            )
        address = self.server.server_address
        port = address[1] if isinstance(address, tuple) else 0
        host = self.headers.get("Host") or f"127.0.0.1:{port}"
        self_url = f"http://{host}{prefix}/" + "/".join(parts)
        status, headers, body = self.graph.handle_graph(method, parts, params, self_url)
        self._send(status, body, headers)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


# -------------------------------------------------------------------- demo world, CLI
# The demo's people are from MY, PL, VN and US, so its forms ask the country, as a
# form aimed at several countries must: a national number is read in its country.
DEMO_QUESTIONS: list[dict[str, Any]] = [
    {"key": "full_name", "label": "Full name", "type": "FULL_NAME"},
    {"key": "email", "label": "Email", "type": "EMAIL"},
    {"key": "phone_number", "label": "Phone number", "type": "PHONE"},
    {"key": "city", "label": "City", "type": "CITY"},
    {"key": "country", "label": "Country", "type": "COUNTRY"},
    {
        "key": "budget",
        "label": "Budget?",
        "type": "CUSTOM",
        "options": [
            {"key": f"opt{i}", "value": v}
            for i, v in enumerate(fake_data.CUSTOM_QUESTIONS["budget"])
        ],
    },
]


def build_demo_world(
    fake: FakeGraph, *, pages: int = 1, forms: int = 2, leads: int = 50, seed: int = 0
) -> dict[str, Any]:
    """Pages with forms, one campaign/ad set/ad per form, and `leads` leads per form spread
    over the last 30 days. Returns fake.world()."""
    now = fake.clock()
    interests = [
        [{"id": "6003107902433", "name": "Real estate"}],
        [{"id": "6003020834693", "name": "Personal finance"}],
    ]
    for p in range(pages):
        page = fake.add_page(f"Demo Page {p + 1}", business_id=f"9{seed:03d}{p:011d}")
        fake.install_app(page.id)
        campaign = fake.add_campaign(page.id, f"Leads {p + 1}")
        for f in range(forms):
            form_id = fake.add_form(
                page.id, f"Form {p + 1}.{f + 1}", questions=copy.deepcopy(DEMO_QUESTIONS)
            )
            adset = fake.add_adset(campaign, f"Ad set {f + 1}", interests=interests[f % 2])
            fake.add_ad(adset, f"Ad {f + 1}", form_id=form_id)
            fake.generate_leads(form_id, leads, start=now - 30 * 86400, end=now)
    return fake.world()


def config_section(fake: FakeGraph, world: dict[str, Any]) -> dict[str, Any]:
    """The `facebook:` config section that reads this emulator's world."""
    return {
        "facebook": {
            "graph_url": fake.base_url,
            "app_id": fake.app_id,
            "app_secret": fake.app_secret,
            "verify_token": fake._verify_token,
            "pages": [{"id": p["id"], "access_token": p["token"]} for p in world["pages"]],
        }
    }


def how_to(base_url: str, world: dict[str, Any], webhook_url: str | None) -> str:
    """What to do next with a running emulator: make a lead, have it sent by webhook."""
    form = world["forms"][0]["id"] if world["forms"] else "FORM_ID"
    page = world["pages"][0]["id"] if world["pages"] else "PAGE_ID"
    lead = json.dumps({"form_id": form, "field_data": {"email": "ana@example.com",
                                                       "full_name": "Ana Nowak"}})  # fmt: skip
    hook = webhook_url or "http://127.0.0.1:8787/webhooks/facebook"
    subscribe = json.dumps({"url": hook, "install": [page]})
    steps = [
        "# Make a lead (the next poll reads it; a subscribed webhook announces it):",
        f"curl -s -X POST {base_url}/_fake/lead -H 'Content-Type: application/json' \\",
        f"  -d '{lead}'",
    ]
    if webhook_url:
        steps.append(f"# Webhooks go to {webhook_url} for every new lead.")
    else:
        steps += [
            "# Send webhooks to a running `leadsync run` (its verify_token: verify-me):",
            f"curl -s -X POST {base_url}/_fake/subscribe -H 'Content-Type: application/json' \\",
            f"  -d '{subscribe}'",
        ]
    return "\n".join(steps)


def serve(
    port: int,
    host: str = "127.0.0.1",
    pages: int = 1,
    forms: int = 2,
    leads: int = 50,
    webhook_url: str | None = None,
    latency: float = 0.0,
    seed: int = 0,
) -> None:
    fake = FakeGraph(seed=seed)
    fake.start(host, port)
    world = build_demo_world(fake, pages=pages, forms=forms, leads=leads, seed=seed)
    fake.set_faults(latency=latency)
    if webhook_url:
        fake.subscribe_webhook(webhook_url)
    print(f"Fake Graph API at {fake.base_url}  (control: {fake.base_url}/_fake/world)")
    print(f"app_id: {fake.app_id}\napp_secret: {fake.app_secret}")
    for page in world["pages"]:
        print(f"page {page['id']} ({page['name']}) token: {page['token']}")
    for form in world["forms"]:
        print(
            f"form {form['id']} ({form['name']}) on page {form['page_id']}: "
            f"{form['leads_count']} leads"
        )
    print("\n# Paste into leadsync.yaml (validated by leadsync config validate):")
    print(yaml.safe_dump(config_section(fake, world), sort_keys=False), flush=True)
    print(how_to(fake.base_url, world, webhook_url), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
