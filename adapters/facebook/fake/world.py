"""The emulator's world: Pages, tokens, forms, campaigns, ad sets, ads and leads.

State and the builders tests use to shape it (`add_page`, `add_form`, `add_lead`, ...).
How Graph answers about this world lives in `nodes.py` and `routes.py`.
"""

from __future__ import annotations

import bisect
import collections
import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapters.facebook.fake import data as fake_data
from adapters.facebook.fake.errors import not_found

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
BIG = 2**62


@dataclass
class FakePage:
    """A Page of the world and its Page access token."""

    id: str
    name: str
    token: str
    business_id: str | None


@dataclass
class Token:
    """An access token: a Page's, or a system user's of a business."""

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
            lo = max(lo, bisect.bisect_right(self.keys, (-math.ceil(lt), BIG)))
        if le is not None:
            lo = max(lo, bisect.bisect_left(self.keys, (-math.floor(le), -BIG)))
        if gt is not None:
            hi = min(hi, bisect.bisect_left(self.keys, (-math.floor(gt), -BIG)))
        if ge is not None:
            hi = min(hi, bisect.bisect_right(self.keys, (-math.ceil(ge), BIG)))
        return lo, hi


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(ts))


class World:
    """Everything the emulated Graph knows; guarded by `lock` (the HTTP server is threaded)."""

    def __init__(
        self, *, app_id: str, app_secret: str, seed: int, clock: Callable[[], float]
    ) -> None:
        self.app_id, self.app_secret, self.seed, self.clock = app_id, app_secret, seed, clock
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self._data_rng = random.Random(f"data:{seed}")
        self.objects: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, Token] = {}
        self.leads: dict[str, dict[str, str]] = {}  # lead id -> field -> JSON fragment
        self.lead_meta: dict[str, dict[str, Any]] = {}
        self.indexes: dict[str, LeadIndex] = collections.defaultdict(LeadIndex)
        self.installed: dict[str, list[str]] = {}  # page id -> subscribed fields
        self.base_url = ""

    def _notify(
        self, page_id: str, lead_id: str, form_id: str, ad_id: str | None, created: int
    ) -> None:
        """A new lead happened: the server sends its leadgen webhook (see FakeGraph)."""

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
                "created_time": iso(created),
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

    # ---------------------------------------------------------------- tokens, installs

    def expire_token(self, token: str, subcode: int = 463) -> None:
        with self.lock:
            self.tokens[token].expired_subcode = subcode

    def revoke_permission(self, token: str, permission: str) -> None:
        with self.lock:
            self.tokens[token].permissions.discard(permission)

    def install_app(self, page_id: str, fields_: list[str] | None = None) -> None:
        with self.lock:
            self.installed[page_id] = list(fields_ or ["leadgen"])

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

    def visible(self, token: Token, obj: dict[str, Any]) -> bool:
        if token.kind == "page":
            return bool(obj["page_id"] == token.scope_id)
        return obj.get("business_id") is not None and obj["business_id"] == token.scope_id

    def lookup(self, token: Token, obj_id: str, method: str = "get") -> dict[str, Any]:
        obj = self.objects.get(obj_id)
        if obj is None and obj_id in self.lead_meta:
            obj = {"kind": "lead", "id": obj_id, **self.lead_meta[obj_id]}
        if obj is None or not self.visible(token, obj):
            raise not_found(obj_id, method)
        return obj

    def scopes(self, obj: dict[str, Any] | None) -> list[str]:
        if obj is None:
            return []
        return [s for s in (obj.get("page_id"), obj.get("business_id")) if s]

    def lead_created(self, lead_id: str) -> int | None:
        meta = self.lead_meta.get(lead_id)
        return int(meta["created"]) if meta is not None and "created" in meta else None

    def delete_lead(self, lead_id: str) -> None:
        meta = self.lead_meta.pop(lead_id)
        self.leads.pop(lead_id)
        for index_id in (meta["form_id"], meta["ad_id"]):
            if index_id:
                index = self.indexes[index_id]
                index.keys.remove((-meta["created"], -int(lead_id)))
        form = self.objects[meta["form_id"]]
        if form["test_lead"] == lead_id:
            form["test_lead"] = None
