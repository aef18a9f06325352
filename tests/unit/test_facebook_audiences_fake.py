"""The Graph emulator's custom audiences and Conversions API endpoints, over loopback
HTTP, against what the reference says (§B, §C, §E), partly through the facebook-business
SDK itself (its DELETE-in-the-URL removal is the trap the emulator must reproduce)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from adapters.facebook.fake import FakeGraph


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Api:
    def __init__(self, fake: FakeGraph, token: str) -> None:
        self.fake, self.token = fake, token
        self.proof = hmac.new(fake.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()

    def call(self, method: str, path: str, **params: Any) -> requests.Response:
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        values.update(access_token=self.token, appsecret_proof=self.proof)
        url = f"{self.fake.base_url}/v26.0/{path}"
        if method in ("GET", "DELETE"):
            return requests.request(method, url, params=values, timeout=10)
        return requests.post(url, data=values, timeout=10)


@pytest.fixture
def world() -> Iterator[tuple[FakeGraph, Api, str]]:
    fake = FakeGraph(seed=3)
    fake.start()
    try:
        token = fake.add_system_user_token("9001")
        account = fake.audiences.add_account("123456")
        yield fake, Api(fake, token), account
    finally:
        fake.stop()


def audience(api: Api, account: str, name: str = "Qualified leads") -> str:
    made = api.call(
        "POST",
        f"{account}/customaudiences",
        name=name,
        subtype="CUSTOM",
        customer_file_source="USER_PROVIDED_ONLY",
    )
    assert made.status_code == 200, made.text
    return str(made.json()["id"])


def rows(n: int, start: int = 0) -> list[list[str]]:
    return [[sha(f"p{i}@example.com"), sha(f"6012{i:07d}")] for i in range(start, start + n)]


def test_add_and_remove_members_with_counts_and_invalid_samples(world: Any) -> None:
    fake, api, account = world
    aid = audience(api, account)
    data = [*rows(3), ["not-a-hash", ""], ["", ""]]
    added = api.call(
        "POST", f"{aid}/users", payload={"schema": ["EMAIL", "PHONE"], "data": data}
    ).json()
    assert added["num_received"] == 5 and added["num_invalid_entries"] == 2
    assert len(added["invalid_entry_samples"]) == 2
    assert len(fake.audiences.audiences[aid].members) == 3
    removed = api.call(
        "DELETE", f"{aid}/users", payload={"schema": ["EMAIL", "PHONE"], "data": rows(1)}
    )
    assert removed.status_code == 200 and len(fake.audiences.audiences[aid].members) == 2
    node = api.call("GET", aid, fields="approximate_count_lower_bound,operation_status").json()
    assert node["operation_status"] == {"code": 200}


def test_the_request_limits_hold(world: Any) -> None:
    _, api, account = world
    aid = audience(api, account)
    too_many = api.call(
        "POST", f"{aid}/users", payload={"schema": ["EMAIL", "PHONE"], "data": rows(10_001)}
    )
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == 100
    # A single-key upload to an audience made with a multi-key one: 2650 (§B).
    api.call("POST", f"{aid}/users", payload={"schema": ["EMAIL", "PHONE"], "data": rows(2)})
    single = api.call(
        "POST", f"{aid}/users", payload={"schema": "EMAIL_SHA256", "data": [sha("x")]}
    )
    assert single.json()["error"]["code"] == 2650
    # A wide DELETE breaks the connection, as the SDK's URL payload does near 300 rows.
    with pytest.raises(requests.ConnectionError):
        api.call(
            "DELETE", f"{aid}/users", payload={"schema": ["EMAIL", "PHONE"], "data": rows(300)}
        )
    fine = api.call(
        "DELETE", f"{aid}/users", payload={"schema": ["EMAIL", "PHONE"], "data": rows(250)}
    )
    assert fine.status_code == 200


def test_the_sdks_remove_users_fails_past_the_url_limit(world: Any) -> None:
    from facebook_business.adobjects.customaudience import CustomAudience
    from facebook_business.api import FacebookAdsApi

    fake, api, account = world
    aid = audience(api, account)
    sdk = FacebookAdsApi.init(
        app_id=fake.app_id, app_secret=fake.app_secret, access_token=api.token,
        api_version="v26.0", crash_log=False,
    )  # fmt: skip
    sdk._session.GRAPH = fake.base_url
    users = [[e, p] for e, p in rows(300)]
    target = CustomAudience(aid, api=sdk)
    target.add_users(schema=["EMAIL", "PHONE"], users=users, is_raw=True, pre_hashed=True)
    assert len(fake.audiences.audiences[aid].members) == 300
    with pytest.raises(requests.ConnectionError):
        target.remove_users(schema=["EMAIL", "PHONE"], users=users, is_raw=True, pre_hashed=True)
    target.remove_users(schema=["EMAIL", "PHONE"], users=users[:200], is_raw=True, pre_hashed=True)
    assert len(fake.audiences.audiences[aid].members) == 100


def test_a_replace_session_must_start_at_one_and_swaps_members_at_the_last_batch(
    world: Any,
) -> None:
    fake, api, account = world
    aid = audience(api, account)
    api.call("POST", f"{aid}/users", payload={"schema": ["EMAIL", "PHONE"], "data": rows(5)})
    schema = ["EMAIL", "PHONE"]
    late = api.call(
        "POST", f"{aid}/usersreplace", payload={"schema": schema, "data": rows(2)},
        session={"session_id": 77, "batch_seq": 2, "last_batch_flag": False},
    )  # fmt: skip
    error = late.json()["error"]
    assert (error["code"], error["error_subcode"]) == (2650, 1870147)
    for seq, part in ((1, rows(3, 100)), (2, rows(2, 200))):
        done = api.call(
            "POST", f"{aid}/usersreplace", payload={"schema": schema, "data": part},
            session={"session_id": 78, "batch_seq": seq, "last_batch_flag": seq == 2,
                     "estimated_num_total": 5},
        )  # fmt: skip
        assert done.status_code == 200, done.text
        # Members change only when the last batch arrives: the old five stay until then.
        old = {r[0] for r in rows(5)}
        kept = {key[0] for key in fake.audiences.audiences[aid].members}
        assert (kept == old) == (seq == 1)
    members = fake.audiences.audiences[aid].members
    assert all(key[0] in {r[0] for r in rows(3, 100) + rows(2, 200)} for key in members)
    sessions = api.call("GET", f"{aid}/sessions").json()["data"]
    assert any(s["session_id"] == "78" and s["stage"] == "uploaded" for s in sessions)


def test_flagged_throttled_and_unpermitted_audiences_answer_graph_errors(world: Any) -> None:
    fake, api, account = world
    aid = audience(api, account)
    fake.audiences.flag(aid)
    flagged = api.call("POST", f"{aid}/users", payload={"schema": "EMAIL_SHA256", "data": []})
    assert flagged.json()["error"]["error_subcode"] == 1713230
    fake.audiences.throttle(60)
    throttled = api.call("POST", f"{account}/customaudiences", name="x", subtype="CUSTOM",
                         customer_file_source="USER_PROVIDED_ONLY")  # fmt: skip
    assert throttled.json()["error"]["code"] == 80003
    page_token = fake.add_system_user_token("9001", permissions={"leads_retrieval"})
    denied = Api(fake, page_token).call("GET", aid)
    assert denied.json()["error"]["code"] == 200


def test_a_removal_that_would_leave_the_audience_too_small_is_refused(world: Any) -> None:
    fake, api, account = world
    aid = audience(api, account)
    fake.audiences.min_after_remove = 5
    api.call("POST", f"{aid}/users", payload={"schema": ["EMAIL", "PHONE"], "data": rows(6)})
    schema = ["EMAIL", "PHONE"]
    refused = api.call("DELETE", f"{aid}/users", payload={"schema": schema, "data": rows(2)})
    assert refused.json()["error"]["code"] == 2650
    assert "low audience size" in refused.json()["error"]["message"]
    assert len(fake.audiences.audiences[aid].members) == 6  # nothing removed
    # Removing one (5 left) or someone not in it is fine.
    assert api.call("DELETE", f"{aid}/users", payload={"schema": schema, "data": rows(1)}).ok
    unknown = rows(1, start=50)
    assert api.call("DELETE", f"{aid}/users", payload={"schema": schema, "data": unknown}).ok
    assert len(fake.audiences.audiences[aid].members) == 5


def test_a_lookalike_needs_a_seed_of_100(world: Any) -> None:
    _, api, account = world
    seed = audience(api, account)
    spec = {"ratio": 0.01, "country": "MY"}
    small = api.call("POST", f"{account}/customaudiences", name="LAL", subtype="LOOKALIKE",
                     origin_audience_id=seed, lookalike_spec=spec)  # fmt: skip
    assert small.status_code == 400
    api.call("POST", f"{seed}/users", payload={"schema": ["EMAIL", "PHONE"], "data": rows(120)})
    made = api.call("POST", f"{account}/customaudiences", name="LAL", subtype="LOOKALIKE",
                    origin_audience_id=seed, lookalike_spec=spec)  # fmt: skip
    assert made.status_code == 200
    wide = {"ratio": 0.25, "country": "MY"}
    bad = api.call("POST", f"{account}/customaudiences", name="LAL2", subtype="LOOKALIKE",
                   origin_audience_id=seed, lookalike_spec=wide)  # fmt: skip
    assert bad.status_code == 400


def crm_event(lead_id: str, when: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_name": "Qualified",
        "event_time": when,
        "action_source": "system_generated",
        "user_data": {"lead_id": lead_id, "em": [sha("a@example.com")]},
        "custom_data": {"event_source": "crm", "lead_event_source": "leadsync"},
        **extra,
    }


def test_conversion_leads_events_are_checked_and_one_bad_event_rejects_the_batch(
    world: Any,
) -> None:
    fake, api, _ = world
    page = fake.add_page("Shop", business_id="9001")
    form = fake.add_form(page.id, name="Form")
    lead = fake.add_lead(form, {"email": "a@example.com"})
    dataset = fake.audiences.add_dataset("555000111")
    now = int(time.time())
    good = api.call("POST", "555000111/events", data=[crm_event(lead, now)])
    assert good.status_code == 200 and good.json()["events_received"] == 1
    old = crm_event(lead, now - 8 * 86_400)
    unknown = crm_event("123456789012345", now)
    raw_email = crm_event(lead, now, user_data={"lead_id": lead, "em": "a@example.com"})
    for bad in (old, unknown, raw_email):
        answer = api.call("POST", "555000111/events", data=[crm_event(lead, now), bad])
        assert answer.status_code == 400, bad
    assert len(dataset.events) == 1  # the rejected batches left nothing
    tested = api.call("POST", "555000111/events", data=[crm_event(lead, now)], test_event_code="T1")
    assert tested.status_code == 200 and len(dataset.test_events["T1"]) == 1
    too_many = api.call("POST", "555000111/events", data=[crm_event(lead, now)] * 1001)
    assert too_many.status_code == 400
