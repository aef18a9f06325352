"""Graph's routes over the world: who may call (tokens, appsecret_proof), which node or
edge a path names, and the writes (subscribed_apps, test leads, audiences, events).

Every function takes the emulator first; `server.FakeGraph.handle_graph` calls `route`
under the world's lock, after counting the call and its rate-limit usage.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

from adapters.facebook.fake.audiences import AudienceError
from adapters.facebook.fake.errors import GraphError, not_found, param_error
from adapters.facebook.fake.nodes import (
    DEFAULT_FIELDS,
    lead_json,
    leads_page,
    node_json,
    simple_edge,
    wanted_fields,
)
from adapters.facebook.fake.world import Token

if TYPE_CHECKING:
    from adapters.facebook.fake.server import FakeGraph


def auth(graph: FakeGraph, params: dict[str, str]) -> Token:
    """The call's token, checked as Graph checks it: present, known, not expired, and with
    a matching appsecret_proof when the app requires one or one is sent."""
    raw = params.get("access_token")
    if not raw:
        raise GraphError(104, "An access token is required to request this resource.")
    token = graph.tokens.get(raw)
    if token is None:  # real text varies: "Malformed access token" / "Invalid OAuth ..."
        raise GraphError(190, "Invalid OAuth access token - Cannot parse access token", subcode=467)
    if token.expired_subcode is not None:
        msg = {
            460: "Error validating access token: The session has been invalidated because "
            "the user changed their password or Facebook has changed the session "
            "for security reasons.",
            458: f"Error validating access token: The user has not authorized "
            f"application {graph.app_id}.",
        }.get(token.expired_subcode, "Error validating access token: Session has expired.")
        raise GraphError(190, msg, subcode=token.expired_subcode)
    got = params.get("appsecret_proof", "")
    if graph.require_appsecret_proof or got:  # a proof that is sent is always checked
        want = hmac.new(graph.app_secret.encode(), raw.encode(), hashlib.sha256).hexdigest()
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


def route(
    graph: FakeGraph,
    method: str,
    token: Token,
    parts: list[str],
    params: dict[str, str],
    self_url: str,
) -> str:
    """The JSON answer to `method /parts` for `token`, or a GraphError as Graph gives it."""
    if parts == ["me", "accounts"] and method == "GET":
        pages = [
            o for o in graph.objects.values() if o["kind"] == "page" and graph.visible(token, o)
        ]
        items = [
            {
                "id": p["id"],
                "name": p["name"],
                "tasks": ["ADVERTISE", "ANALYZE"],
                "access_token": next(
                    t.value
                    for t in graph.tokens.values()
                    if t.kind == "page" and t.scope_id == p["id"]
                ),
            }
            for p in pages
        ]
        return json.dumps(simple_edge(items, params, self_url, graph.max_page_size))
    if not parts or len(parts) > 2:
        raise GraphError(2500, "Unknown path components: /" + "/".join(parts[1:]))
    if graph.audiences.handles(parts[0], parts[1] if len(parts) > 1 else None):
        return audience_route(graph, method, token, parts, params)
    obj_id = parts[0]
    obj = graph.lookup(token, obj_id, method.lower())
    kind = obj["kind"]
    if len(parts) == 1:
        if method == "GET":
            if kind == "lead":
                if "leads_retrieval" not in token.permissions:
                    raise GraphError(
                        200, "(#200) Requires leads_retrieval permission to manage the object"
                    )
                ads_visible = bool({"ads_management", "ads_read"} & token.permissions)
                return lead_json(graph, obj_id, wanted_fields(params, "lead"), ads_visible)
            return json.dumps(node_json(graph, obj, wanted_fields(params, kind)))
        if method == "DELETE" and kind == "lead" and obj["test"]:
            graph.delete_lead(obj_id)
            return '{"success":true}'
        raise not_found(obj_id, method.lower())
    edge = parts[1]
    if edge == "leads" and kind in ("form", "ad") and method == "GET":
        return leads_page(
            graph,
            token,
            obj_id,
            params,
            self_url,
            max_page_size=graph.max_page_size,
            empty_page=graph.empty_page,
        )
    if edge == "leadgen_forms" and kind == "page" and method == "GET":
        wanted = wanted_fields(params, "form")
        forms = [
            node_json(graph, o, wanted)
            for o in graph.objects.values()
            if o["kind"] == "form" and o["page_id"] == obj_id
        ]
        return json.dumps(simple_edge(forms, params, self_url, graph.max_page_size))
    if edge == "subscribed_apps" and kind == "page":
        return subscribed_apps(graph, method, token, obj_id, params, self_url)
    if edge == "test_leads" and kind == "form":
        return test_leads(graph, method, obj, params, self_url)
    raise GraphError(2500, f"Unknown path components: /{edge}")


def audience_route(
    graph: FakeGraph, method: str, token: Token, parts: list[str], params: dict[str, str]
) -> str:
    if token.kind != "system_user" or "ads_management" not in token.permissions:
        raise GraphError(200, "(#200) Requires ads_management permission to manage the object")
    try:
        result = graph.audiences.route(
            method, parts[0], parts[1] if len(parts) > 1 else None, params
        )
    except AudienceError as err:
        raise GraphError(err.code, err.message, subcode=err.subcode, status=err.status) from None
    return json.dumps(result)


def subscribed_apps(
    graph: FakeGraph, method: str, token: Token, page_id: str, params: dict[str, str], self_url: str
) -> str:
    if method == "GET":
        apps = (
            [
                {
                    "category": "Business",
                    "link": "https://example.invalid/",
                    "name": "leadsync (fake)",
                    "id": graph.app_id,
                    "subscribed_fields": graph.installed[page_id],
                }
            ]
            if page_id in graph.installed
            else []
        )
        return json.dumps(simple_edge(apps, params, self_url, graph.max_page_size))
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
        graph.installed[page_id] = wanted
        return '{"success":true}'
    if method == "DELETE":
        graph.installed.pop(page_id, None)
        return '{"success":true}'
    raise not_found(page_id, method.lower())


def test_leads(
    graph: FakeGraph, method: str, form: dict[str, Any], params: dict[str, str], self_url: str
) -> str:
    if method == "GET":
        lead = form["test_lead"]
        items = (
            [json.loads(lead_json(graph, lead, list(DEFAULT_FIELDS["lead"]), False))]
            if lead
            else []
        )
        return json.dumps(simple_edge(items, params, self_url, graph.max_page_size))
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
                "test@fb.com" if q["key"] == "email" else f"<test lead: dummy data for {q['key']}>"
            )
            for q in form["questions"]
        }
    disclaimers = (
        json.loads(params["custom_disclaimer_responses"])
        if params.get("custom_disclaimer_responses")
        else None
    )
    # Test leads are organic (no ad), per the same guide.
    lead_id = graph.add_lead(
        form["id"],
        answers,
        custom_disclaimer_responses=disclaimers,
        is_organic=True,
        _test=True,
    )
    form["test_lead"] = lead_id
    return json.dumps({"id": lead_id})
