"""The HubSpot emulator's HTTP routes (Starlette): CRM v3 contacts search, batch
upsert/update/read, get by id, plus /_fake/ control routes (no token).

Request bodies are validated strictly, as HubSpot does: an unknown field is a 400 with
HubSpot's error shape. An exception that is not a HubSpotError is a bug of the fake: it
is answered 500 with "fake bug" and the message, never silently.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from adapters.hubspot.fake_state import (
    DEFAULT_PROPERTIES,
    OPERATORS,
    Contact,
    HubSpotError,
    iso,
    validation,
)

if TYPE_CHECKING:
    from adapters.hubspot.fake import FakeHubSpot

SEARCH_CAP = 10_000  # results per query; paging beyond is a 400 (§G)
MAX_PAGE = 200
MAX_BATCH = 100
MAX_GROUPS, MAX_FILTERS, MAX_TOTAL_FILTERS = 5, 6, 18  # the stricter of §G's two sources
BASE = "/crm/v3/objects/contacts"


def error_body(err: HubSpotError) -> dict[str, Any]:
    return {
        "status": "error",
        "message": err.message,
        "correlationId": str(uuid.uuid4()),
        "category": err.category,
        **err.extra,
    }


def only(body: Any, allowed: set[str], where: str = "") -> dict[str, Any]:
    """A JSON object with no field outside `allowed` (HubSpot rejects unknown fields)."""
    if not isinstance(body, dict):
        raise validation(f"Invalid input JSON{where}: expected an object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise validation(f'Invalid input JSON{where}: Unrecognized field "{unknown[0]}"')
    return body


def listed(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise validation(f"Invalid input JSON: {name} must be an array")
    return value


def properties_of(value: Any, name: str = "properties") -> list[str]:
    items = listed(value, name)
    if not all(isinstance(p, str) for p in items):
        raise validation(f"Invalid input JSON: {name} must be strings")
    return items


class _Dropped(Response):
    """A response whose connection dies after the headers: the request was handled, the
    answer never arrives (the "drop" fault)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000")],
            }
        )
        raise ConnectionAbortedError("fake HubSpot: dropped connection (fault injection)")


class Api:
    """The routes, bound to one FakeHubSpot."""

    def __init__(self, fake: FakeHubSpot) -> None:
        self.fake = fake

    def app(self) -> Starlette:
        api = self.wrap
        routes = [
            Route(f"{BASE}/search", api(self.search, search=True), methods=["POST"]),
            Route(f"{BASE}/batch/upsert", api(self.upsert), methods=["POST"]),
            Route(f"{BASE}/batch/update", api(self.update), methods=["POST"]),
            Route(f"{BASE}/batch/read", api(self.read), methods=["POST"]),
            Route(BASE + "/{id}", api(self.get_one), methods=["GET"]),
            Route("/_fake/state", self.control(self.fake.state), methods=["GET"]),
            Route("/_fake/contacts", self.control(self.fake.control_create), methods=["POST"]),
            Route("/_fake/contacts/{id}", self.control(self.fake.control_change), methods=["POST"]),
            Route("/_fake/faults", self.control(self.fake.set_faults), methods=["POST"]),
            Route("/_fake/webhooks", self.control(self.fake.set_webhooks), methods=["POST"]),
        ]
        return Starlette(routes=routes)

    def control(self, method: Callable[..., Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                body = json.loads(await request.body() or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                return JSONResponse(method(**body, **request.path_params))
            except (TypeError, ValueError, KeyError, HubSpotError) as exc:
                return JSONResponse({"status": "error", "message": repr(exc)}, status_code=400)

        return endpoint

    def wrap(
        self, handler: Callable[[Request, Any], Any], search: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        fake = self.fake

        async def endpoint(request: Request) -> Response:
            faults = fake.faults
            if faults.latency:
                await asyncio.sleep(faults.latency)
            if fake.fault_roll(faults.error_rate):
                fake.count("fault_5xx")
                err = HubSpotError(faults.error_status, "INTERNAL_ERROR", "internal error")
                return JSONResponse(error_body(err), status_code=err.status)
            headers: dict[str, str] = {}
            try:
                fake.authorize(request.headers.get("authorization"))
                headers, limited = fake.limits.take(search)
                if limited is not None:
                    raise limited
                raw = await request.body()
                try:
                    body = json.loads(raw) if raw else None
                except ValueError as exc:
                    raise validation(f"Invalid input JSON on line 1: {exc}") from None
                fake.count(handler.__name__)
                result = handler(request, body)
                status = 200
                if isinstance(result, tuple):
                    status, result = result
            except HubSpotError as err:
                fake.count(f"error_{err.status}")
                return JSONResponse(error_body(err), status_code=err.status, headers=headers)
            except Exception as exc:  # the fake's own bug: loud, never a plausible answer
                fake.count("fake_bug")
                message = f"fake bug: {type(exc).__name__}: {exc}"
                return JSONResponse({"status": "error", "message": message}, status_code=500)
            if fake.fault_roll(faults.drop_rate):
                fake.count("fault_drop")
                return _Dropped()
            return JSONResponse(result, status_code=status, headers=headers)

        return endpoint

    # ---------------------------------------------------------------- handlers
    def search(self, request: Request, body: Any) -> Any:
        body = only(body, {"filterGroups", "sorts", "properties", "limit", "after", "query"})
        groups = self._groups(body.get("filterGroups", []))
        sort = self._sort(body.get("sorts", []))
        wanted = properties_of(body.get("properties") or list(DEFAULT_PROPERTIES))
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_PAGE:
            raise validation(f"limit must be an integer from 0 to {MAX_PAGE}")
        after_text = body.get("after", "0")
        if not str(after_text).isdigit():
            raise validation(f"after {after_text!r} is not a valid paging cursor")
        after = int(after_text)
        cap = self.fake.search_cap
        if after >= cap:
            # GUESS at the text; the status (400) is §G's.
            raise validation(
                f"Search results are limited to {cap}; after={after} is past the limit."
            )
        found = self.fake.portal.search(groups, sort)
        query = body.get("query")
        if query is not None:
            if not isinstance(query, str) or len(query) > 3000:
                raise validation("query must be a string of at most 3000 characters")
            found = [c for c in found if _matches_query(c, query)]
        end = min(after + limit, cap, len(found))
        page = found[after:end]
        out: dict[str, Any] = {"total": len(found), "results": [c.json(wanted) for c in page]}
        if end < len(found):
            out["paging"] = {"next": {"after": str(end)}}
        return out

    def _groups(self, value: Any) -> list[list[dict[str, Any]]]:
        groups = listed(value, "filterGroups")
        if len(groups) > MAX_GROUPS:
            raise validation(f"at most {MAX_GROUPS} filterGroups are allowed")
        out: list[list[dict[str, Any]]] = []
        for group in groups:
            group = only(group, {"filters"}, " in filterGroups")
            filters = listed(group.get("filters", []), "filters")
            if len(filters) > MAX_FILTERS:
                raise validation(f"at most {MAX_FILTERS} filters per filterGroup are allowed")
            out.append([self._filter(f) for f in filters])
        if sum(len(g) for g in out) > MAX_TOTAL_FILTERS:
            raise validation(f"at most {MAX_TOTAL_FILTERS} filters in all are allowed")
        return out

    @staticmethod
    def _filter(value: Any) -> dict[str, Any]:
        f = only(value, {"propertyName", "operator", "value", "values", "highValue"}, " in filters")
        op = f.get("operator")
        if not isinstance(f.get("propertyName"), str) or op not in OPERATORS:
            raise validation(f"filter needs a propertyName and an operator of {sorted(OPERATORS)}")
        needs = {"IN": "values", "NOT_IN": "values", "BETWEEN": "highValue"}.get(op)
        if needs == "values" and not isinstance(f.get("values"), list):
            raise validation(f"operator {op} needs `values` (an array)")
        if op not in ("IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY") and "value" not in f:
            raise validation(f"operator {op} needs `value`")
        if needs == "highValue" and "highValue" not in f:
            raise validation("operator BETWEEN needs `highValue`")
        return f

    @staticmethod
    def _sort(value: Any) -> tuple[str, bool] | None:
        sorts = listed(value, "sorts")
        if not sorts:
            return None
        first = sorts[0]  # only one sort is honoured (§G)
        if isinstance(first, str):
            return first.lstrip("-"), first.startswith("-")
        first = only(first, {"propertyName", "direction"}, " in sorts")
        direction = first.get("direction", "ASCENDING")
        if direction not in ("ASCENDING", "DESCENDING") or not first.get("propertyName"):
            raise validation("sorts need a propertyName and direction ASCENDING|DESCENDING")
        return str(first["propertyName"]), direction == "DESCENDING"

    def _inputs(self, body: Any, allowed: set[str], item: set[str]) -> list[dict[str, Any]]:
        body = only(body, allowed)
        inputs = listed(body.get("inputs"), "inputs")
        if len(inputs) > MAX_BATCH:
            raise validation(f"Batch input limit is {MAX_BATCH}; got {len(inputs)} inputs")
        return [only(i, item, " in inputs") for i in inputs]

    def upsert(self, request: Request, body: Any) -> Any:
        inputs = self._inputs(
            body, {"inputs"}, {"idProperty", "id", "properties", "objectWriteTraceId"}
        )
        keys = []
        for i in inputs:
            if i.get("idProperty") != "email":
                raise validation("upsert supports idProperty `email` only in this emulator")
            if not isinstance(i.get("id"), str) or "@" not in i["id"]:
                raise validation(f"id {i.get('id')!r} is not an email address")
            keys.append(i["id"].lower())
        if len(set(keys)) != len(keys):
            raise validation("Duplicate IDs found in batch input")
        return self.fake.write(inputs, upsert=True)

    def update(self, request: Request, body: Any) -> Any:
        inputs = self._inputs(
            body, {"inputs"}, {"id", "idProperty", "properties", "objectWriteTraceId"}
        )
        return self.fake.write(inputs, upsert=False)

    def read(self, request: Request, body: Any) -> Any:
        allowed = {"inputs", "properties", "propertiesWithHistory", "idProperty", "archived"}
        inputs = self._inputs(body, allowed, {"id"})
        wanted = properties_of(body.get("properties") or list(DEFAULT_PROPERTIES))
        id_property = body.get("idProperty")
        found, missing = [], []
        for i in inputs:
            contact = self.fake.portal.find(str(i.get("id")), id_property)
            if contact is None:
                missing.append(str(i.get("id")))
            else:
                found.append(contact.json(wanted))
        return batch_result(found, missing, self.fake.portal.clock_ms())

    def get_one(self, request: Request, body: Any) -> Any:
        q = request.query_params
        unknown = set(q) - {"properties", "idProperty", "archived", "propertiesWithHistory"}
        if unknown:
            raise validation(f"Unrecognized query parameter {sorted(unknown)[0]}")
        wanted = [p for p in q.get("properties", "").split(",") if p] or list(DEFAULT_PROPERTIES)
        contact = self.fake.portal.find(request.path_params["id"], q.get("idProperty"))
        if contact is None:
            raise HubSpotError(404, "OBJECT_NOT_FOUND", "resource not found")
        return contact.json(wanted)


def batch_result(results: list[dict[str, Any]], missing: list[str], now_ms: int) -> Any:
    """A batch answer; some inputs not found is a 207 with HubSpot's error entries."""
    now = iso(now_ms)
    out: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": now,
        "completedAt": now,
    }
    if not missing:
        return out
    out["numErrors"] = 1
    out["errors"] = [
        {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some CONTACT objects, they may be deleted or not exist. "
            "Check that ids are valid.",
            "context": {"ids": missing},
        }
    ]
    return 207, out


def _matches_query(contact: Contact, query: str) -> bool:
    # GUESS: `query` searches the default text properties for the word.
    text = query.lower()
    fields: Mapping[str, str] = contact.properties
    return any(
        text in fields.get(name, "").lower()
        for name in ("email", "firstname", "lastname", "phone", "company")
    )
