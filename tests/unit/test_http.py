"""connector/http.py: the error table decides retry / throttle / fail / ignore; scopes
pause every caller; hooks see every call and error. Time is a fake clock, never slept."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
import responses

from connector.http import (
    IGNORE,
    ErrorTable,
    Fail,
    Hooks,
    HttpClient,
    HttpError,
    RateLimited,
    Scope,
    ThrottledError,
    TransientError,
    retry_after,
)

BASE = "https://api.example.test"


class FakeTime:
    """A clock that moves only when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def vendor_code(response: requests.Response) -> str | None:
    try:
        return str(response.json().get("category"))
    except ValueError:
        return None


TABLE = ErrorTable(
    statuses={429: RateLimited("account", default_wait=7.0), 401: Fail("renew the token")},
    codes={"OBJECT_NOT_FOUND": IGNORE, "RATE_LIMITS": RateLimited("account", 3.0)},
    code_of=vendor_code,
)


def make(t: FakeTime, **kw: Any) -> tuple[HttpClient, list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []
    hooks = Hooks(
        call=lambda a: seen.append(("call", a)),
        error=lambda a, c: seen.append(("error", c)),
        throttled=lambda a, s: seen.append(("throttled", s)),
    )
    scopes = {"account": Scope("account", clock=t.clock, sleep=t.sleep)}
    client = HttpClient(
        "test", BASE, TABLE, scopes=scopes, hooks=hooks, sleep=t.sleep, backoff=0.1, **kw
    )
    return client, seen


@responses.activate
def test_5xx_is_retried_with_backoff_then_succeeds() -> None:
    t = FakeTime()
    responses.get(f"{BASE}/x", status=503, json={"category": "INTERNAL"})
    responses.get(f"{BASE}/x", status=502, body="bad gateway")
    responses.get(f"{BASE}/x", json={"ok": 1})
    client, seen = make(t)
    assert client.request("GET", "/x").json() == {"ok": 1}
    assert client.calls == 3
    assert client.errors == {"INTERNAL": 1, "502": 1}
    assert [s for s in seen if s[0] == "call"] == [("call", "test")] * 3
    assert len(t.slept) == 2 and all(0.05 <= s <= 0.2 for s in t.slept)


@responses.activate
def test_retries_run_out_as_a_transient_error() -> None:
    t = FakeTime()
    responses.get(f"{BASE}/x", status=500, body="")
    client, _ = make(t, attempts=3)
    with pytest.raises(TransientError) as caught:
        client.request("GET", "/x")
    assert caught.value.status == 500
    assert client.calls == 3


@responses.activate
def test_fail_is_not_retried_and_names_the_action() -> None:
    t = FakeTime()
    responses.get(f"{BASE}/x", status=401, json={"category": "INVALID_AUTHENTICATION"})
    client, seen = make(t)
    with pytest.raises(HttpError) as caught:
        client.request("GET", "/x")
    assert not isinstance(caught.value, TransientError)
    assert caught.value.action == "renew the token"
    assert "renew the token" in str(caught.value)
    assert client.calls == 1
    assert ("error", "INVALID_AUTHENTICATION") in seen


@responses.activate
def test_an_unlisted_4xx_fails_with_the_fallback_action() -> None:
    t = FakeTime()
    responses.post(f"{BASE}/x", status=422, body="nope")
    client, _ = make(t)
    with pytest.raises(HttpError) as caught:
        client.request("POST", "/x", json={})
    assert caught.value.action == TABLE.fallback


@responses.activate
def test_ignore_returns_the_error_response() -> None:
    t = FakeTime()
    responses.get(f"{BASE}/x", status=404, json={"category": "OBJECT_NOT_FOUND"})
    client, _ = make(t)
    assert client.request("GET", "/x").status_code == 404
    assert client.calls == 1


@responses.activate
def test_429_pauses_the_scope_for_retry_after_and_every_caller_waits() -> None:
    t = FakeTime()
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": "4"}, json={})
    responses.get(f"{BASE}/x", json={"ok": 1})
    client, seen = make(t)
    assert client.request("GET", "/x", scope="account").json() == {"ok": 1}
    assert sum(t.slept) == pytest.approx(4.0)
    assert ("throttled", pytest.approx(4.0)) in seen
    # The pause is the scope's: another call in it would have waited too.
    client.scope("account").pause(2)
    assert client.scope("account").acquire() == pytest.approx(2.0)


@responses.activate
def test_vendor_code_beats_status_and_default_wait_applies_without_headers() -> None:
    t = FakeTime()
    responses.get(f"{BASE}/x", status=429, json={"category": "RATE_LIMITS"})
    responses.get(f"{BASE}/x", json={})
    client, _ = make(t)
    client.request("GET", "/x", scope="account")
    assert sum(t.slept) == pytest.approx(3.0)  # the code's default, not the status's 7


@responses.activate
def test_vendor_wait_header_is_honoured() -> None:
    t = FakeTime()

    def wait_of(response: requests.Response) -> float | None:
        value = response.headers.get("X-Wait-Ms")
        return float(value) / 1000 if value else None

    table = ErrorTable(statuses={429: RateLimited("app", 1.0)}, wait_of=wait_of)
    responses.get(f"{BASE}/x", status=429, headers={"X-Wait-Ms": "2500"})
    responses.get(f"{BASE}/x", json={})
    client = HttpClient(
        "t", BASE, table, scopes={"app": Scope("app", clock=t.clock, sleep=t.sleep)}, sleep=t.sleep
    )
    client.request("GET", "/x", scope="app")
    assert sum(t.slept) == pytest.approx(2.5)


@responses.activate
def test_a_throttle_of_another_scope_is_slept_by_the_retry() -> None:
    t = FakeTime()
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": "5"})
    responses.get(f"{BASE}/x", json={})
    client, _ = make(t)
    client.request("GET", "/x")  # no scope named: the account pause is still waited
    assert sum(t.slept) == pytest.approx(5.0)


@responses.activate
def test_a_long_throttle_is_raised_not_slept() -> None:
    t = FakeTime()
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": "3600"})
    client, _ = make(t)
    with pytest.raises(ThrottledError) as caught:
        client.request("GET", "/x", scope="account")
    assert caught.value.scope == "account" and caught.value.wait == 3600
    assert client.calls == 1 and t.slept == []
    assert client.scope("account").paused_for() == pytest.approx(3600)


@responses.activate
def test_connection_errors_and_timeouts_are_retried() -> None:
    t = FakeTime()
    responses.get(f"{BASE}/x", body=requests.ConnectionError("reset"))
    responses.get(f"{BASE}/x", body=requests.ReadTimeout("slow"))
    responses.get(f"{BASE}/x", json={"ok": 1})
    client, _ = make(t)
    assert client.request("GET", "/x").json() == {"ok": 1}
    assert client.errors == {"connection": 1, "timeout": 1}


@responses.activate
def test_an_answer_cut_off_mid_body_is_retried() -> None:
    t = FakeTime()
    responses.post(f"{BASE}/x", body=requests.exceptions.ChunkedEncodingError("cut"))
    responses.post(f"{BASE}/x", json={"ok": 1})
    client, _ = make(t)
    assert client.request("POST", "/x", json={}).json() == {"ok": 1}
    assert client.errors == {"connection": 1}


@responses.activate
def test_a_scope_known_paused_for_long_raises_without_calling() -> None:
    t = FakeTime()
    client, _ = make(t)
    client.scope("account").pause(7200)
    with pytest.raises(ThrottledError) as caught:
        client.request("GET", "/x", scope="account")
    assert caught.value.wait == pytest.approx(7200) and client.calls == 0 and t.slept == []


@responses.activate
def test_timeouts_and_session_headers_are_sent() -> None:
    t = FakeTime()
    responses.get(f"{BASE}/x", json={})
    client, _ = make(t, headers={"Authorization": "Bearer t"}, timeout=(1.5, 9.0))
    client.request("GET", "/x")
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer t"
    assert sent.req_kwargs["timeout"] == (1.5, 9.0)


@responses.activate
def test_stopping_ends_a_wait_without_calling() -> None:
    t = FakeTime()
    stopping = threading.Event()
    client, _ = make(t, stopping=stopping)
    client.scope("account").pause(30)
    stopping.set()
    with pytest.raises(HttpError, match="stopping"):
        client.request("GET", "/x", scope="account")
    assert client.calls == 0


def test_scope_paces_calls_per_window() -> None:
    t = FakeTime()
    scope = Scope("search", rate=5, per=1.0, clock=t.clock, sleep=t.sleep)
    start = t.now
    for _ in range(12):
        scope.acquire()
    # 12 calls at 5 per second: the 6th waits for the first window, the 11th for the second.
    assert t.now - start == pytest.approx(2.0)


def test_retry_after_reads_seconds_and_dates_and_survives_garbage() -> None:
    assert retry_after("12") == 12.0
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=lambda: 1445412480.0) == 10.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


def test_over_loopback_a_throttled_search_is_waited_out_in_its_scope() -> None:
    """The layer against the HubSpot emulator: no pacing on our side, so the sixth
    search in a second gets HubSpot's 429 (policy SECONDLY), the search scope pauses
    for the wait the table names, and the call then succeeds."""
    from adapters.hubspot.client import error_table
    from adapters.hubspot.fake import FakeHubSpot

    t = FakeTime()
    with FakeHubSpot(clock=t.clock) as fake:
        client = HttpClient(
            "hubspot",
            fake.base_url,
            error_table(t.clock),
            headers={"Authorization": f"Bearer {fake.token}"},
            scopes={"search": Scope("search", clock=t.clock, sleep=t.sleep)},
            sleep=t.sleep,
        )
        path = "/crm/v3/objects/contacts/search"
        for _ in range(6):
            assert client.request("POST", path, json={"limit": 1}, scope="search").ok
        assert client.errors == {"SECONDLY": 1}
        assert fake.calls["error_429"] == 1 and sum(t.slept) == pytest.approx(1.0)
        with pytest.raises(HttpError) as caught:
            client.request("POST", path, json={"limit": 1, "sorting": []}, scope="search")
        assert caught.value.code == "VALIDATION_ERROR" and caught.value.status == 400


@responses.activate
def test_a_throttle_of_a_scope_family_pauses_only_the_calls_member() -> None:
    # One table for every Page: "page" names the family, the call names its member.
    t = FakeTime()
    table = ErrorTable(statuses={429: RateLimited("page", default_wait=600.0)})
    responses.get(f"{BASE}/x", status=429)
    scopes = {n: Scope(n, clock=t.clock, sleep=t.sleep) for n in ("page:1", "page:2")}
    client = HttpClient("test", BASE, table, scopes=scopes, sleep=t.sleep)
    with pytest.raises(ThrottledError) as caught:
        client.request("GET", "/x", scope=["app", "page:1"])
    assert caught.value.scope == "page:1"
    assert client.scope("page:1").paused_for() == pytest.approx(600)
    assert client.scope("page:2").paused_for() == 0 and client.scope("app").paused_for() == 0
