"""The HubSpot client over real loopback HTTP against the emulator, and the v3
signature check against the emulator's deliveries. Time is one fake clock shared by
client and emulator: pacing and pauses are observed as fake seconds, never slept."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.hubspot.client import ContactInput, HubSpotClient, HubSpotError
from adapters.hubspot.config import HubSpotConfig
from adapters.hubspot.fake import FakeHubSpot
from adapters.hubspot.signature import signed_uri, verify_v3
from connector.http import Hooks, ThrottledError, TransientError
from tests.unit.test_hubspot_fake import Receiver

T0 = 1_764_000_000_000


class FakeTime:
    """Seconds that pass only when someone sleeps."""

    def __init__(self) -> None:
        self.now = T0 / 1000
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def start(t: FakeTime, **limits: Any) -> FakeHubSpot:
    fake = FakeHubSpot(clock=t, seed=3, **limits)
    fake.start()
    return fake


@pytest.fixture
def fake(t: FakeTime) -> Iterator[FakeHubSpot]:
    hs = start(t)
    yield hs
    hs.stop()


def client_for(fake: FakeHubSpot, t: FakeTime, attempts: int = 5, **config: Any) -> HubSpotClient:
    cfg = HubSpotConfig.model_validate(
        {"token": fake.token, "portal_id": 62515, "api_url": fake.base_url, **config}
    )
    return HubSpotClient(
        cfg, hooks=Hooks(), attempts=attempts, backoff=0.01, clock=t, sleep=t.sleep, wall=t
    )


def test_pull_pages_past_the_10000_cap_and_dedupes_the_boundary(
    fake: FakeHubSpot, t: FakeTime
) -> None:
    # 10,500 contacts, seven to a lastmodifieddate: the 10,000th result falls inside a
    # group of ties, so the restart with GTE re-reads ids the first query gave.
    made = fake.bulk_add(10_500, start_ms=T0, step_ms=1000, same=7)
    client = client_for(fake, t)
    started = t()
    got = list(client.modified_since(None))
    assert sorted(c.id for c in got) == sorted(str(i) for i in made)  # each exactly once
    assert [c.modified_ms for c in got] == sorted(c.modified_ms for c in got)
    searches = fake.calls["search"]
    # 50 pages of 200 to the cap; the 10,000th result is in the tie group of results
    # 9,996-10,002, so the restart reads 10,500 - 9,996 = 504 results: 3 more pages.
    assert searches == 53
    # Five searches a second at most: the client waited, HubSpot never had to say 429.
    assert t() - started >= (searches - 5) / 5
    assert fake.calls["error_429"] == 0


def test_pull_from_a_cursor_reads_only_newer_contacts(fake: FakeHubSpot, t: FakeTime) -> None:
    fake.bulk_add(30, start_ms=T0, step_ms=10)
    client = client_for(fake, t)
    got = list(client.modified_since(T0 + 200, properties=["firstname"]))
    assert [c.modified_ms for c in got] == [T0 + 10 * i for i in range(20, 30)]
    assert {"email", "lastmodifieddate", "hs_lead_status", "firstname"} <= set(got[0].properties)


def test_pull_that_cannot_progress_fails_clearly(t: FakeTime) -> None:
    fake = start(t, search_per_second=1000)
    try:
        fake.bulk_add(10_001, start_ms=T0, same=20_000)  # one lastmodifieddate for all
        with pytest.raises(HubSpotError, match="share lastmodifieddate"):
            list(client_for(fake, t).modified_since(None))
        assert fake.calls["search"] == 50  # stopped at the cap, not re-read forever
    finally:
        fake.stop()


def test_upsert_batches_of_100_with_new_flags_and_context(fake: FakeHubSpot, t: FakeTime) -> None:
    fake.portal.define("leadsync_source")
    fake.add_contact("p0@ex.com", firstname="Zero")
    client = client_for(fake, t, context_properties={"source": "leadsync_source"})
    from adapters.hubspot.client import lead_properties

    props = lead_properties(
        {"first_name": "Zoë", "phone": "+48600700800", "gender": "x"},
        {"source": "facebook", "form": "f1"},
        client.config,
    )
    assert props == {"firstname": "Zoë", "phone": "+48600700800", "leadsync_source": "facebook"}
    inputs = [ContactInput(f"P{i}@ex.com", props) for i in range(250)]
    inputs.append(ContactInput("p1@ex.com", {"lastname": "Later"}))  # same email: merged
    done = client.upsert(inputs)
    assert fake.calls["upsert"] == 3
    assert len(done) == 250
    flags = {u.email: u.new for u in done}
    assert flags["p0@ex.com"] is False and flags["p1@ex.com"] is True
    assert sum(flags.values()) == 249
    p1 = fake.portal.find("p1@ex.com", "email")
    assert p1 is not None and p1.properties["lastname"] == "Later"
    assert p1.properties["firstname"] == "Zoë" and p1.properties["leadsync_source"] == "facebook"
    again = client.upsert([ContactInput("p2@ex.com", {"lastname": "Two"})])
    assert [u.new for u in again] == [False]


def test_status_push_batches_and_reports_missing(fake: FakeHubSpot, t: FakeTime) -> None:
    ids = [str(i) for i in fake.bulk_add(150, start_ms=T0)]
    client = client_for(fake, t)
    changes = [(i, "ATTEMPTED_TO_CONTACT") for i in ids] + [("9999999", "NEW")]
    changes.append((ids[1], "OPEN_DEAL"))  # a later change of the same contact wins
    result = client.push_statuses(changes)
    assert fake.calls["update"] == 2
    assert result.missing == ["9999999"]
    assert len(result.updated) == 150
    statuses = {c.properties.get("hs_lead_status") for c in fake.portal.contacts.values()}
    assert statuses == {"ATTEMPTED_TO_CONTACT", "OPEN_DEAL"}
    assert fake.portal.contacts[int(ids[1])].properties["hs_lead_status"] == "OPEN_DEAL"


def test_lifecyclestage_can_be_the_status_property(fake: FakeHubSpot, t: FakeTime) -> None:
    [cid] = fake.bulk_add(1, start_ms=T0)
    client = client_for(fake, t, status_property="lifecyclestage")
    client.push_statuses([(str(cid), "customer")])
    got = client.get(str(cid))
    assert got is not None and got.properties["lifecyclestage"] == "customer"
    assert client.get("123456789") is None


def test_rate_limit_headers_pause_before_a_429(t: FakeTime) -> None:
    fake = start(t, max_per_interval=3, interval_ms=2000)
    try:
        ids = [str(i) for i in fake.bulk_add(700, start_ms=T0)]
        client = client_for(fake, t)
        started = t()
        client.push_statuses([(i, "NEW") for i in ids])  # 7 calls, 3 per 2 s
        assert fake.calls["update"] == 7 and fake.calls["error_429"] == 0
        assert t() - started >= 4.0  # two full windows waited out
    finally:
        fake.stop()


def test_a_429_is_waited_out_and_retried(fake: FakeHubSpot, t: FakeTime) -> None:
    [cid] = fake.bulk_add(1, start_ms=T0)
    client = client_for(fake, t)
    for _ in range(fake.limits.max_per_interval):  # someone else spent the window
        fake.limits.take(search=False)
    started = t()
    assert client.push_statuses([(str(cid), "NEW")]).updated == [str(cid)]
    assert fake.calls["error_429"] == 1
    assert t() - started >= 10.0  # the interval the header names
    assert client.http.errors["TEN_SECONDLY_ROLLING"] == 1


def test_the_daily_limit_is_tracked_and_stops_the_calls(t: FakeTime) -> None:
    fake = start(t, daily=3)
    try:
        [cid] = fake.bulk_add(1, start_ms=T0)
        client = client_for(fake, t)
        client.get(str(cid))
        assert client.usage.left() == 2  # from X-HubSpot-RateLimit-Daily-Remaining
        client.get(str(cid))
        client.get(str(cid))
        assert client.usage.left() == 0
        # Known exhausted: the next call is not made; it would wait until midnight,
        # far past max_pause, so it is raised for the caller to report paused.
        with pytest.raises(ThrottledError) as caught:
            client.get(str(cid))
        assert caught.value.scope == "daily" and caught.value.wait > 60
    finally:
        fake.stop()


def test_a_daily_429_from_hubspot_is_raised_not_slept(t: FakeTime) -> None:
    fake = start(t, daily=1)
    try:
        client = client_for(fake, t)
        fake.limits.take(search=True)  # the day's only call, spent elsewhere
        started = t()
        with pytest.raises(ThrottledError) as caught:
            list(client.modified_since(None))
        assert caught.value.scope == "daily"
        assert t() - started < 60
    finally:
        fake.stop()


def test_5xx_and_dropped_answers_are_retried(fake: FakeHubSpot, t: FakeTime) -> None:
    ids = [str(i) for i in fake.bulk_add(20, start_ms=T0)]
    client = client_for(fake, t, attempts=8)
    fake.set_faults(error_rate=0.25, drop_rate=0.1)
    for i in ids:
        got = client.get(i)
        assert got is not None and got.id == i
    assert fake.calls["fault_5xx"] > 0 and fake.calls["fault_drop"] > 0
    fake.set_faults(error_rate=1.0, drop_rate=0.0)
    with pytest.raises(TransientError):
        client.get(ids[0])


def test_a_wrong_token_fails_with_what_to_do(fake: FakeHubSpot, t: FakeTime) -> None:
    cfg = HubSpotConfig.model_validate(
        {"token": "pat-nope", "portal_id": 1, "api_url": fake.base_url}
    )
    client = HubSpotClient(cfg, hooks=Hooks(), clock=t, sleep=t.sleep)
    with pytest.raises(HubSpotError, match="private-app token"):
        client.check()
    assert fake.calls["error_401"] == 1  # not retried
    assert "pat-nope" not in repr(cfg)


def test_the_default_vocabulary_follows_the_status_property() -> None:
    leads = HubSpotConfig.model_validate({"token": "x", "portal_id": 1}).vocabulary
    assert leads.to_status("CONNECTED") == "Qualified" and leads.to_external("New") == "NEW"
    assert leads.to_status("SOMETHING_CUSTOM") is None and leads.to_external("Won") is None
    stages = HubSpotConfig.model_validate(
        {"token": "x", "portal_id": 1, "status_property": "lifecyclestage"}
    ).vocabulary
    assert stages.to_status("customer") == "Won" and stages.to_external("New") == "lead"
    own = HubSpotConfig.model_validate(
        {"token": "x", "portal_id": 1, "vocabulary": {"statuses": {"HOT": "Qualified"}}}
    ).vocabulary
    assert own.to_external("Qualified") == "HOT" and own.to_status("NEW") is None
    with pytest.raises(ValueError, match="not one of the values"):
        HubSpotConfig.model_validate(
            {"token": "x", "portal_id": 1, "vocabulary": {"write": {"New": "NOPE"}}}
        )


# -------------------------------------------------------------------- signature
def delivery(fake: FakeHubSpot, value: str) -> dict[str, Any]:
    receiver = Receiver()
    try:
        fake.set_webhooks(url=receiver.url)
        [cid] = fake.bulk_add(1, start_ms=T0)
        fake.change(cid, "firstname", value)
        fake.flush_webhooks()
        return {**receiver.got[0], "url": receiver.url}
    finally:
        receiver.close()


def check(got: dict[str, Any], **changes: Any) -> bool:
    args: dict[str, Any] = {
        "method": "POST",
        "uri": got["url"],
        "body": got["body"],
        "signature": got["headers"]["X-HubSpot-Signature-v3"],
        "timestamp": got["headers"]["X-HubSpot-Request-Timestamp"],
        **changes,
    }
    return verify_v3("fake-client-secret", **args)


def test_the_emulators_deliveries_verify(fake: FakeHubSpot) -> None:
    got = delivery(fake, "Zoë Ñandú")  # non-ASCII in the raw body
    assert "Zoë".encode() in got["body"]
    assert check(got)
    assert not check(got, body=got["body"].replace(b"Zo", b"Jo"))
    assert not check(got, uri=got["url"] + "&y=2")
    assert not check(got, method="PUT")
    assert not verify_v3(
        "other-secret",
        method="POST",
        uri=got["url"],
        body=got["body"],
        signature=got["headers"]["X-HubSpot-Signature-v3"],
        timestamp=got["headers"]["X-HubSpot-Request-Timestamp"],
    )


def test_stale_future_and_garbled_headers_are_rejected(fake: FakeHubSpot) -> None:
    got = delivery(fake, "Ann")
    ts = int(got["headers"]["X-HubSpot-Request-Timestamp"])
    assert not check(got, now=lambda: ts / 1000 + 301)  # older than 5 minutes
    assert check(got, now=lambda: ts / 1000 + 299)
    assert not check(got, now=lambda: ts / 1000 - 301)  # from the future
    assert not check(got, timestamp="12ab")
    assert not check(got, timestamp="١٢٣")  # digits, but not ASCII ones
    assert not check(got, timestamp=None)
    assert not check(got, signature="")
    assert not check(got, signature="sïgnature")  # a latin-1 header value
    assert not check(got, signature="签名")


def test_hand_computed_v3_signature_and_the_uri_decoding_rule() -> None:
    secret, body, ts = "s3cret", '[{"propertyValue":"Łódź"}]'.encode(), str(int(time.time() * 1000))
    uri = "https://example.com/webhooks/hubspot?a=%3A%2Fb%20c"
    message = b"POST" + b"https://example.com/webhooks/hubspot?a=:/b%20c" + body + ts.encode()
    sig = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())
    assert signed_uri(uri) == "https://example.com/webhooks/hubspot?a=:/b%20c"
    assert verify_v3(secret, method="POST", uri=uri, body=body, signature=sig, timestamp=ts)
    assert verify_v3(
        secret, method="POST", uri=uri, body=body, signature=sig.decode(), timestamp=ts
    )
