"""The HubSpot emulator against shared/reference/external-apis.md §G, over real HTTP
with plain requests (not our client), and its webhooks checked with a hand-computed
signature from §G's formula."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from adapters.hubspot.fake import FakeHubSpot

SEARCH = "/crm/v3/objects/contacts/search"
BATCH = "/crm/v3/objects/contacts/batch"
T0 = 1_764_000_000_000  # ms


class Clock:
    def __init__(self) -> None:
        self.now = T0 / 1000

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeHubSpot]:
    hs = FakeHubSpot(clock=clock, max_per_interval=20, interval_ms=1000, daily=1000)
    hs.start()
    yield hs
    hs.stop()


def call(fake: FakeHubSpot, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token or fake.token}"}
    if body is None:
        return requests.get(fake.base_url + path, headers=headers, timeout=5)
    return requests.post(fake.base_url + path, json=body, headers=headers, timeout=5)


def error(response: requests.Response, status: int, category: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "error" and body["category"] == category
    assert body["correlationId"] and body["message"]
    return body


def ids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


@pytest.fixture
def people(fake: FakeHubSpot) -> dict[str, str]:
    made = {}
    for i, (name, status, company) in enumerate(
        [("ann", "NEW", "Acme"), ("bob", "OPEN", ""), ("cy", "NEW", "Acme Ltd"), ("di", "", "")]
    ):
        props = {"firstname": name, "company": company}
        if status:
            props["hs_lead_status"] = status
        made[name] = str(fake.add_contact(f"{name}@ex.com", at=T0 + i * 1000, **props).id)
    return made


def search(fake: FakeHubSpot, *groups: list[dict[str, Any]], **body: Any) -> requests.Response:
    body.setdefault("limit", 200)
    assert isinstance(fake.clock, Clock)
    fake.clock.now += 0.2  # these tests are about filters: keep under 5 searches/s
    return call(fake, SEARCH, {"filterGroups": [{"filters": g} for g in groups], **body})


def f(name: str, op: str, **kw: Any) -> dict[str, Any]:
    return {"propertyName": name, "operator": op, **kw}


def test_search_filters_each_operator(fake: FakeHubSpot, people: dict[str, str]) -> None:
    p = people
    assert ids(search(fake, [f("hs_lead_status", "EQ", value="NEW")])) == [p["ann"], p["cy"]]
    assert ids(search(fake, [f("hs_lead_status", "NEQ", value="NEW")])) == [p["bob"], p["di"]]
    assert ids(search(fake, [f("hs_lead_status", "HAS_PROPERTY")])) == [p["ann"], p["bob"], p["cy"]]
    assert ids(search(fake, [f("hs_lead_status", "NOT_HAS_PROPERTY")])) == [p["di"]]
    assert ids(search(fake, [f("firstname", "IN", values=["bob", "di"])])) == [p["bob"], p["di"]]
    assert ids(search(fake, [f("firstname", "NOT_IN", values=["bob"])])) == [
        p["ann"],
        p["cy"],
        p["di"],
    ]
    assert ids(search(fake, [f("company", "CONTAINS_TOKEN", value="ltd")])) == [p["cy"]]
    # Datetimes compare as instants, given in ms or ISO-8601.
    assert ids(search(fake, [f("lastmodifieddate", "GT", value=str(T0 + 1000))])) == [
        p["cy"],
        p["di"],
    ]
    assert ids(search(fake, [f("lastmodifieddate", "GTE", value=str(T0 + 1000))])) == [
        p["bob"],
        p["cy"],
        p["di"],
    ]
    iso = "2025-11-24T16:00:01.000Z"  # T0 + 1 s
    assert ids(search(fake, [f("lastmodifieddate", "LT", value=iso)])) == [p["ann"]]
    assert ids(search(fake, [f("lastmodifieddate", "LTE", value=iso)])) == [p["ann"], p["bob"]]
    between = f("lastmodifieddate", "BETWEEN", value=str(T0 + 1000), highValue=str(T0 + 2000))
    assert ids(search(fake, [between])) == [p["bob"], p["cy"]]


def test_filters_in_a_group_are_anded_and_groups_ored(
    fake: FakeHubSpot, people: dict[str, str]
) -> None:
    both = [f("hs_lead_status", "EQ", value="NEW"), f("company", "EQ", value="Acme")]
    assert ids(search(fake, both)) == [people["ann"]]
    either = search(fake, [f("firstname", "EQ", value="bob")], [f("firstname", "EQ", value="di")])
    assert ids(either) == [people["bob"], people["di"]]


def test_sorts_and_only_the_first_is_honoured(fake: FakeHubSpot, people: dict[str, str]) -> None:
    down = [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}]
    assert ids(search(fake, sorts=down)) == [people[n] for n in ("di", "cy", "bob", "ann")]
    two = [{"propertyName": "firstname", "direction": "ASCENDING"}, *down]
    assert ids(search(fake, sorts=two)) == [people[n] for n in ("ann", "bob", "cy", "di")]


def test_default_properties_and_paging(fake: FakeHubSpot, people: dict[str, str]) -> None:
    first = call(fake, SEARCH, {"limit": 3}).json()
    assert first["total"] == 4 and len(first["results"]) == 3
    assert set(first["results"][0]["properties"]) == {
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    }
    nxt = first["paging"]["next"]["after"]
    rest = call(fake, SEARCH, {"limit": 3, "after": nxt}).json()
    assert [r["id"] for r in rest["results"]] == [people["di"]] and "paging" not in rest


def test_limit_over_200_and_unknown_fields_are_400(fake: FakeHubSpot) -> None:
    error(call(fake, SEARCH, {"limit": 201}), 400, "VALIDATION_ERROR")
    body = error(call(fake, SEARCH, {"limit": 1, "sort": []}), 400, "VALIDATION_ERROR")
    assert '"sort"' in body["message"]
    bad_filter = {"filterGroups": [{"filters": [f("email", "EQ", value="x", valu="y")]}]}
    error(call(fake, SEARCH, bad_filter), 400, "VALIDATION_ERROR")
    error(
        call(fake, SEARCH, {"filterGroups": [{"filters": [f("email", "LIKE", value="x")]}]}),
        400,
        "VALIDATION_ERROR",
    )
    six = [{"filters": [f("email", "HAS_PROPERTY")]}] * 6
    error(call(fake, SEARCH, {"filterGroups": six}), 400, "VALIDATION_ERROR")


def test_paging_past_10000_results_is_400(fake: FakeHubSpot) -> None:
    fake.bulk_add(10_050, start_ms=T0)
    page = call(fake, SEARCH, {"limit": 200, "after": "9800"}).json()
    assert page["total"] == 10_050 and len(page["results"]) == 200
    assert page["paging"]["next"]["after"] == "10000"
    error(call(fake, SEARCH, {"limit": 200, "after": "10000"}), 400, "VALIDATION_ERROR")
    # A page that would cross the cap stops at it.
    assert len(call(fake, SEARCH, {"limit": 200, "after": "9900"}).json()["results"]) == 100


def test_upsert_by_email_flags_new_and_updated(fake: FakeHubSpot) -> None:
    existing = fake.add_contact("old@ex.com", firstname="Old")
    inputs = [
        {"idProperty": "email", "id": "Old@Ex.com", "properties": {"lastname": "Timer"}},
        {"idProperty": "email", "id": "new@ex.com", "properties": {"firstname": "Nu"}},
    ]
    answer = call(fake, f"{BATCH}/upsert", {"inputs": inputs})
    assert answer.status_code == 200
    results = {r["properties"]["email"]: r for r in answer.json()["results"]}
    assert results["old@ex.com"]["new"] is False and results["old@ex.com"]["id"] == str(existing.id)
    assert results["old@ex.com"]["properties"]["firstname"] == "Old"  # untouched
    assert results["new@ex.com"]["new"] is True
    assert len(fake.portal.contacts) == 2


def test_upsert_limits_and_validation_write_nothing(fake: FakeHubSpot) -> None:
    many = [{"idProperty": "email", "id": f"p{i}@ex.com", "properties": {}} for i in range(101)]
    error(call(fake, f"{BATCH}/upsert", {"inputs": many}), 400, "VALIDATION_ERROR")
    twice = [{"idProperty": "email", "id": "a@ex.com", "properties": {}}] * 2
    error(call(fake, f"{BATCH}/upsert", {"inputs": twice}), 400, "VALIDATION_ERROR")
    bad = [
        {"idProperty": "email", "id": "ok@ex.com", "properties": {"firstname": "Ok"}},
        {"idProperty": "email", "id": "b@ex.com", "properties": {"favourite_colour": "red"}},
    ]
    body = error(call(fake, f"{BATCH}/upsert", {"inputs": bad}), 400, "VALIDATION_ERROR")
    assert body["errors"][0]["error"] == "PROPERTY_DOESNT_EXIST"
    option = [{"idProperty": "email", "id": "c@ex.com", "properties": {"hs_lead_status": "WON"}}]
    body = error(call(fake, f"{BATCH}/upsert", {"inputs": option}), 400, "VALIDATION_ERROR")
    assert body["errors"][0]["error"] == "INVALID_OPTION"
    assert fake.portal.contacts == {}


def test_batch_update_read_and_get(fake: FakeHubSpot, people: dict[str, str]) -> None:
    inputs = [
        {"id": people["ann"], "properties": {"hs_lead_status": "CONNECTED"}},
        {"id": "999999", "properties": {"hs_lead_status": "CONNECTED"}},
    ]
    answer = call(fake, f"{BATCH}/update", {"inputs": inputs})
    assert answer.status_code == 207
    body = answer.json()
    assert [r["id"] for r in body["results"]] == [people["ann"]]
    assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert body["errors"][0]["context"]["ids"] == ["999999"]
    read = call(
        fake,
        f"{BATCH}/read",
        {"inputs": [{"id": people["ann"]}], "properties": ["hs_lead_status"]},
    ).json()
    assert read["results"][0]["properties"]["hs_lead_status"] == "CONNECTED"
    one = call(fake, f"/crm/v3/objects/contacts/{people['bob']}?properties=firstname")
    assert one.json()["properties"] == {"firstname": "bob"}
    by_email = call(fake, "/crm/v3/objects/contacts/cy@ex.com?idProperty=email").json()
    assert by_email["id"] == people["cy"]
    error(call(fake, "/crm/v3/objects/contacts/424242"), 404, "OBJECT_NOT_FOUND")


def test_bearer_token_is_required(fake: FakeHubSpot) -> None:
    body = error(call(fake, SEARCH, {}, token="pat-wrong"), 401, "INVALID_AUTHENTICATION")
    assert "Authentication credentials not found" in body["message"]
    no_header = requests.post(fake.base_url + SEARCH, json={}, timeout=5)
    error(no_header, 401, "INVALID_AUTHENTICATION")


def test_rate_limit_headers_count_down_then_429(fake: FakeHubSpot, clock: Clock) -> None:
    remaining = []
    for _ in range(20):
        answer = call(fake, f"{BATCH}/read", {"inputs": []})
        assert answer.status_code == 200
        assert answer.headers["X-HubSpot-RateLimit-Max"] == "20"
        assert answer.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "1000"
        remaining.append(int(answer.headers["X-HubSpot-RateLimit-Remaining"]))
    assert remaining == list(range(19, -1, -1))
    body = error(call(fake, f"{BATCH}/read", {"inputs": []}), 429, "RATE_LIMITS")
    assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT"
    clock.now += 1.0  # the rolling window has passed
    assert call(fake, f"{BATCH}/read", {"inputs": []}).status_code == 200


def test_search_has_its_own_5_per_second_and_no_headers(fake: FakeHubSpot, clock: Clock) -> None:
    for _ in range(5):
        answer = call(fake, SEARCH, {"limit": 1})
        assert answer.status_code == 200
        assert not [h for h in answer.headers if h.lower().startswith("x-hubspot-ratelimit")]
    body = error(call(fake, SEARCH, {"limit": 1}), 429, "RATE_LIMITS")
    assert body["policyName"] == "SECONDLY"
    # Search's limit is its own: other endpoints still answer.
    assert call(fake, f"{BATCH}/read", {"inputs": []}).status_code == 200
    clock.now += 1.0
    assert call(fake, SEARCH, {"limit": 1}).status_code == 200


def test_the_daily_limit(clock: Clock) -> None:
    with FakeHubSpot(clock=clock, daily=3) as hs:
        for left in ("2", "1", "0"):
            answer = call(hs, f"{BATCH}/read", {"inputs": []})
            assert answer.headers["X-HubSpot-RateLimit-Daily-Remaining"] == left
        assert error(call(hs, SEARCH, {}), 429, "RATE_LIMITS")["policyName"] == "DAILY"
        clock.now += 86_400
        assert call(hs, SEARCH, {}).status_code == 200


def test_faults_5xx_slow_and_dropped(fake: FakeHubSpot) -> None:
    fake.set_faults(error_rate=1.0, error_status=503)
    assert call(fake, SEARCH, {}).status_code == 503
    fake.set_faults(error_rate=0.0, drop_rate=1.0)
    with pytest.raises(requests.RequestException):
        call(fake, f"{BATCH}/upsert", {"inputs": [{"idProperty": "email", "id": "d@ex.com"}]})
    assert "d@ex.com" in fake.portal.by_email  # handled; only the answer was lost
    fake.set_faults(drop_rate=0.0, latency=0.3)
    with pytest.raises(requests.Timeout):
        requests.post(
            fake.base_url + SEARCH,
            json={},
            headers={"Authorization": f"Bearer {fake.token}"},
            timeout=0.1,
        )


def test_a_bug_of_the_fake_is_a_loud_500(fake: FakeHubSpot, monkeypatch: Any) -> None:
    def broken(*args: Any) -> Any:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(fake.portal, "search", broken)
    answer = call(fake, SEARCH, {})
    assert answer.status_code == 500 and "fake bug: ZeroDivisionError" in answer.json()["message"]


# -------------------------------------------------------------------- webhooks
class Receiver:
    """A loopback endpoint that records raw deliveries and answers from a script."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.answers: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = outer.answers.pop(0) if outer.answers else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/hubspot?x=1"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def events(self) -> list[list[dict[str, Any]]]:
        return [json.loads(g["body"]) for g in self.got]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def hand_signature(secret: str, url: str, body: bytes, timestamp: str) -> str:
    # §G: Base64(HMAC-SHA256(client secret, method + URI + body + timestamp)).
    message = b"POST" + url.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def test_a_change_in_hubspot_sends_a_v3_signed_property_change(
    fake: FakeHubSpot, people: dict[str, str], receiver: Receiver
) -> None:
    fake.set_webhooks(url=receiver.url, properties=["hs_lead_status"])
    fake.change(int(people["bob"]), "hs_lead_status", "CONNECTED")
    fake.change(int(people["bob"]), "firstname", "Robert")  # not subscribed
    fake.flush_webhooks()
    assert len(receiver.got) == 1
    got = receiver.got[0]
    ts = got["headers"]["X-HubSpot-Request-Timestamp"]
    expected = hand_signature("fake-client-secret", receiver.url, got["body"], ts)
    assert got["headers"]["X-HubSpot-Signature-v3"] == expected
    [event] = json.loads(got["body"])
    assert event["subscriptionType"] == "contact.propertyChange"
    assert event["objectId"] == int(people["bob"])
    assert (event["propertyName"], event["propertyValue"]) == ("hs_lead_status", "CONNECTED")
    assert event["portalId"] == fake.portal.portal_id and event["attemptNumber"] == 0
    assert event["occurredAt"] == fake.portal.contacts[int(people["bob"])].updated
    assert {"eventId", "subscriptionId", "appId", "changeSource", "sourceId"} <= set(event)


def test_failed_deliveries_are_retried_with_the_attempt_number(
    fake: FakeHubSpot, people: dict[str, str], receiver: Receiver
) -> None:
    receiver.answers = [500, 503]
    fake.set_webhooks(url=receiver.url)
    fake.change(int(people["ann"]), "hs_lead_status", "OPEN")
    fake.flush_webhooks()
    assert [e[0]["attemptNumber"] for e in receiver.events()] == [0, 1, 2]
    assert fake.hooks.stats["delivered"] == 1


def test_forced_retries_duplicates_and_reordering_on_demand(
    fake: FakeHubSpot, people: dict[str, str], receiver: Receiver
) -> None:
    fake.set_webhooks(url=receiver.url, force_retries=1)
    fake.change(int(people["ann"]), "hs_lead_status", "OPEN")
    fake.flush_webhooks()
    assert [e[0]["attemptNumber"] for e in receiver.events()] == [0, 1]  # 2xx, still resent
    receiver.got.clear()
    fake.set_webhooks(force_retries=0, duplicate=True)
    fake.change(int(people["ann"]), "hs_lead_status", "CONNECTED")
    fake.flush_webhooks()
    first, second = receiver.events()
    assert first == second
    receiver.got.clear()
    fake.set_webhooks(duplicate=False, reorder=True)
    with fake.hooks.cond:  # queue both before the sender wakes
        fake.change(int(people["ann"]), "hs_lead_status", "OPEN_DEAL")
        fake.change(int(people["ann"]), "hs_lead_status", "UNQUALIFIED")
    fake.flush_webhooks()
    values = [e["propertyValue"] for batch in receiver.events() for e in batch]
    assert values == ["UNQUALIFIED", "OPEN_DEAL"]
    occurred = [e["occurredAt"] for batch in receiver.events() for e in batch]
    assert occurred[0] >= occurred[1]  # occurredAt still tells the true order


def test_the_control_route_changes_a_contact_and_emits(
    fake: FakeHubSpot, people: dict[str, str], receiver: Receiver
) -> None:
    requests.post(
        f"{fake.base_url}/_fake/webhooks", json={"url": receiver.url}, timeout=5
    ).raise_for_status()
    answer = requests.post(
        f"{fake.base_url}/_fake/contacts/{people['cy']}",
        json={"name": "hs_lead_status", "value": "BAD_TIMING"},
        timeout=5,
    )
    assert answer.status_code == 200
    fake.flush_webhooks()
    assert receiver.events()[0][0]["propertyValue"] == "BAD_TIMING"
    state = requests.get(f"{fake.base_url}/_fake/state", timeout=5).json()
    assert state["contacts"] == 4 and state["webhooks"]["delivered"] == 1
