"""How Graph shows the world: node fields, lead JSON, and cursor-paged edges.

Field lists follow the SDK's Lead.Field and reference §A; what is a guess says GUESS.
Lead JSON is kept as pre-serialised fragments per field (world.leads), so a page of
/leads is joined, not re-encoded: the backfill benchmark reads hundreds of thousands.
"""

from __future__ import annotations

import base64
import bisect
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from adapters.facebook.fake.errors import GraphError, param_error
from adapters.facebook.fake.world import BIG, Token, World, iso

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


def cursor(key: tuple[int, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def uncursor(value: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        a, b = json.loads(raw)
        return int(a), int(b)
    except Exception as exc:
        raise param_error("Invalid cursor") from exc  # GUESS: exact text unknown


def wanted_fields(params: dict[str, str], kind: str) -> list[str]:
    raw = params.get("fields")
    if not raw:
        return list(DEFAULT_FIELDS[kind])
    return [f.split("{")[0].strip() for f in raw.split(",") if f.strip()]


def lead_json(world: World, lead_id: str, wanted: list[str], ads_visible: bool) -> str:
    frags = world.leads[lead_id]
    out = []
    for f in wanted:
        if f not in LEAD_FIELDS:
            raise param_error(f"Tried accessing nonexisting field ({f}) on node type (Lead)")
        if f in frags and (ads_visible or f not in AD_FIELDS):
            out.append(frags[f])
    return "{" + ",".join(out) + "}"


def node_json(world: World, obj: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
    kind = obj["kind"]
    if kind == "form":
        obj = {
            **obj,
            "leads_count": len(world.indexes[obj["id"]].keys),
            "created_time": iso(obj["created_time"]),
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
            raise param_error(f"Tried accessing nonexisting field ({f}) on node type ({node_type})")
        if obj.get(f) is not None:
            out[f] = obj[f]
    return out


def leads_page(
    world: World,
    token: Token,
    index_id: str,
    params: dict[str, str],
    self_url: str,
    *,
    max_page_size: int,
    empty_page: Callable[[], bool],
) -> str:
    """One page of /{form}/leads or /{ad}/leads: filtering on time_created, limit, cursors.

    `empty_page` says whether this page comes back empty yet with `next` (a fault)."""
    if "leads_retrieval" not in token.permissions:
        raise GraphError(200, "(#200) Requires leads_retrieval permission to manage the object")
    wanted = wanted_fields(params, "lead")
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
    limit = max(1, min(limit, max_page_size))
    index = world.indexes[index_id]
    lo, hi = index.window(
        bounds["GREATER_THAN"],
        bounds["GREATER_THAN_OR_EQUAL"],
        bounds["LESS_THAN"],
        bounds["LESS_THAN_OR_EQUAL"],
    )
    keys = index.keys
    if params.get("before"):
        end = min(hi, bisect.bisect_left(keys, uncursor(params["before"])))
        start = max(lo, end - limit)
    else:
        start = lo
        if params.get("after"):
            start = max(lo, bisect.bisect_right(keys, uncursor(params["after"])))
        end = min(hi, start + limit)
    if empty_page():  # Meta: a page may be empty yet carry `next`; resume where we stand
        here = cursor(keys[start - 1]) if start > 0 else cursor((-BIG, -BIG))
        page: list[tuple[int, int]] = []
        cursors, has_next = {"before": here, "after": here}, True
    else:
        page = keys[start:end] if end > start else []
        has_next = end < hi
        cursors = {"before": cursor(page[0]), "after": cursor(page[-1])} if page else {}
    data = ",".join(lead_json(world, str(-k[1]), wanted, ads_visible) for k in page)
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


def simple_edge(
    items: list[dict[str, Any]], params: dict[str, str], self_url: str, max_page_size: int
) -> dict[str, Any]:
    """Offset-backed cursor paging for the small edges (forms, apps, accounts)."""
    limit = max(1, min(int(params.get("limit", 25) or 25), max_page_size))
    start = int(uncursor(params["after"])[0]) + 1 if params.get("after") else 0
    page = items[start : start + limit]
    out: dict[str, Any] = {"data": page}
    if page:
        out["paging"] = {
            "cursors": {
                "before": cursor((start, 0)),
                "after": cursor((start + len(page) - 1, 0)),
            }
        }
        if start + limit < len(items):
            q = {k: v for k, v in params.items() if k not in ("before", "after", "summary")}
            q["after"] = out["paging"]["cursors"]["after"]
            out["paging"]["next"] = f"{self_url}?{urllib.parse.urlencode(q)}"
    return out
