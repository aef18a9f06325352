"""The Graph API emulator, driven over real HTTP with requests and with the Meta SDK."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from adapters.facebook.fake import FakeGraph, FakePage

SECRET = "fake-app-secret"
T0 = 1_700_000_000


def proof(token: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    fg = FakeGraph(seed=7)
    fg.start()
    yield fg
    fg.stop()


@pytest.fixture
def world(fake: FakeGraph) -> dict[str, Any]:
    page = fake.add_page("Shop", business_id="900000000000001")
    other = fake.add_page("Other shop", business_id="900000000000002")
    form = fake.add_form(page.id, "Form A")
    other_form = fake.add_form(other.id, "Form B")
    camp = fake.add_campaign(page.id, "Camp")
    adset = fake.add_adset(camp, "Set", interests=[{"id": "6003", "name": "Cooking"}])
    ad = fake.add_ad(adset, "Ad one", form_id=form)
    return {
        "page": page,
        "other": other,
        "form": form,
        "other_form": other_form,
        "ad": ad,
        "adset": adset,
        "campaign": camp,
    }


def get(fake: FakeGraph, path: str, token: str | None, **params: Any) -> requests.Response:
    if token is not None:
        params.setdefault("access_token", token)
        params.setdefault("appsecret_proof", proof(token))
    return requests.get(f"{fake.base_url}/v26.0/{path}", params=params, timeout=5)


def error(resp: requests.Response) -> dict[str, Any]:
    body: dict[str, Any] = resp.json()["error"]
    assert {"message", "type", "code", "fbtrace_id"} <= body.keys()
    return body


def all_leads(fake: FakeGraph, form: str, token: str, **params: Any) -> list[dict[str, Any]]:
    session = requests.Session()
    params.update(access_token=token, appsecret_proof=proof(token))
    url: str | None = f"{fake.base_url}/v26.0/{form}/leads"
    out: list[dict[str, Any]] = []
    query: dict[str, Any] | None = params
    for _ in range(10_000):
        if url is None:
            return out
        body = session.get(url, params=query, timeout=5).json()
        query = None  # `next` is a full URL with token and cursor
        out.extend(body["data"])
        url = body.get("paging", {}).get("next")
    raise AssertionError("paging never ended")


# ---------------------------------------------------------------- auth and permissions
def test_missing_token_is_104(fake: FakeGraph, world: dict[str, Any]) -> None:
    resp = get(fake, f"{world['form']}/leads", None)
    assert resp.status_code == 400
    assert error(resp)["code"] == 104


def test_unknown_token_is_190(fake: FakeGraph, world: dict[str, Any]) -> None:
    resp = get(fake, f"{world['form']}/leads", "EAAnonsense")
    assert resp.status_code == 400 and error(resp)["code"] == 190


def test_expired_token_is_190_with_subcode(fake: FakeGraph, world: dict[str, Any]) -> None:
    token = world["page"].token
    assert get(fake, f"{world['form']}/leads", token).status_code == 200
    fake.expire_token(token)
    resp = get(fake, f"{world['form']}/leads", token)
    err = error(resp)
    assert resp.status_code == 400 and (err["code"], err["error_subcode"]) == (190, 463)


def test_wrong_appsecret_proof_is_100(fake: FakeGraph, world: dict[str, Any]) -> None:
    token = world["page"].token
    resp = get(fake, f"{world['form']}/leads", token, appsecret_proof=proof(token, "wrong"))
    err = error(resp)
    assert resp.status_code == 400 and err["code"] == 100
    assert err["type"] == "GraphMethodException" and "appsecret_proof" in err["message"]
    resp = requests.get(
        f"{fake.base_url}/v26.0/{world['form']}/leads", params={"access_token": token}, timeout=5
    )
    assert error(resp)["code"] == 100


def test_missing_leads_retrieval_is_a_permission_error(
    fake: FakeGraph, world: dict[str, Any]
) -> None:
    token = world["page"].token
    lead = fake.add_lead(world["form"], {"email": "a@b.c"}, notify=False)
    fake.revoke_permission(token, "leads_retrieval")
    for path in (f"{world['form']}/leads", lead):
        resp = get(fake, path, token)
        assert resp.status_code == 400 and error(resp)["code"] in (10, 200)


def test_unknown_id_and_other_pages_form_are_100_33(fake: FakeGraph, world: dict[str, Any]) -> None:
    token = world["page"].token
    for path in ("123456789012345/leads", f"{world['other_form']}/leads", world["other"].id):
        err = error(get(fake, path, token))
        assert (err["code"], err["error_subcode"]) == (100, 33)
        assert "does not exist, cannot be loaded due to missing permissions" in err["message"]


def test_system_user_token_sees_every_page_of_its_business(
    fake: FakeGraph, world: dict[str, Any]
) -> None:
    second = fake.add_page("Second", business_id="900000000000001")
    form2 = fake.add_form(second.id)
    token = fake.add_system_user_token("900000000000001")
    assert get(fake, f"{world['form']}/leads", token).status_code == 200
    assert get(fake, f"{form2}/leads", token).status_code == 200
    assert error(get(fake, f"{world['other_form']}/leads", token))["error_subcode"] == 33


# ---------------------------------------------------------------- leads, filtering, paging
def test_lead_fields_and_organic_leads(fake: FakeGraph, world: dict[str, Any]) -> None:
    token = world["page"].token
    paid = fake.add_lead(
        world["form"],
        {"email": "x@y.z", "budget": ["a", "b"]},
        created_time=T0,
        ad_id=world["ad"],
        notify=False,
        custom_disclaimer_responses=[{"checkbox_key": "c1", "is_checked": True}],
    )
    organic = fake.add_lead(world["form"], {"email": "o@y.z"}, created_time=T0 + 1, notify=False)
    fields = (
        "id,created_time,field_data,ad_id,ad_name,adset_name,campaign_name,is_organic,"
        "platform,form_id,custom_disclaimer_responses"
    )
    body = get(fake, paid, token, fields=fields).json()
    assert body["created_time"] == "2023-11-14T22:13:20+0000"
    assert body["field_data"][1] == {"name": "budget", "values": ["a", "b"]}
    assert (body["ad_name"], body["adset_name"], body["campaign_name"]) == ("Ad one", "Set", "Camp")
    assert body["is_organic"] is False and body["custom_disclaimer_responses"][0]["is_checked"]
    body = get(fake, organic, token, fields=fields).json()
    assert body["is_organic"] is True and "ad_id" not in body
    assert set(get(fake, organic, token).json()) == {"id", "created_time", "field_data"}
    assert get(fake, world["ad"], token, fields="name,adset_id").json()["name"] == "Ad one"
    targeting = get(fake, world["adset"], token, fields="targeting,campaign_id").json()["targeting"]
    assert targeting["flexible_spec"][0]["interests"] == [{"id": "6003", "name": "Cooking"}]
    assert get(fake, world["campaign"], token, fields="objective").json()["objective"]


def test_filtering_by_time_created_both_ways(fake: FakeGraph, world: dict[str, Any]) -> None:
    token = world["page"].token
    ids = [
        fake.add_lead(world["form"], {"email": f"{i}@x.y"}, created_time=T0 + i, notify=False)
        for i in range(10)
    ]

    def flt(op: str, value: int) -> set[str]:
        rule = [{"field": "time_created", "operator": op, "value": value}]
        return {
            d["id"]
            for d in all_leads(fake, world["form"], token, limit=3, filtering=json.dumps(rule))
        }

    assert flt("GREATER_THAN", T0 + 6) == set(ids[7:])
    assert flt("GREATER_THAN_OR_EQUAL", T0 + 6) == set(ids[6:])
    assert flt("LESS_THAN", T0 + 2) == set(ids[:2])
    assert flt("LESS_THAN_OR_EQUAL", T0 + 2) == set(ids[:3])
    bad = [{"field": "time_created", "operator": "ABOUT", "value": T0}]
    assert (
        error(get(fake, f"{world['form']}/leads", token, filtering=json.dumps(bad)))["code"] == 100
    )
    bad = [{"field": "email", "operator": "GREATER_THAN", "value": T0}]
    assert (
        error(get(fake, f"{world['form']}/leads", token, filtering=json.dumps(bad)))["code"] == 100
    )


def test_paging_newest_first_every_lead_once_despite_empty_pages(
    fake: FakeGraph, world: dict[str, Any]
) -> None:
    token = world["page"].token
    ids = fake.generate_leads(world["form"], 250, start=T0, end=T0 + 86400)
    fake.set_faults(empty_page_rate=0.5)
    got = all_leads(fake, world["form"], token, limit=1000, fields="id,created_time")
    assert sorted(d["id"] for d in got) == sorted(ids)
    assert len(got) == 250
    times = [d["created_time"] for d in got]
    assert times == sorted(times, reverse=True)
    # an empty page still carries `next`, which is what stops the SDK's Cursor early
    fake.set_faults(empty_page_rate=1.0)
    body = get(fake, f"{world['form']}/leads", token).json()
    assert body["data"] == [] and "next" in body["paging"] and body["paging"]["cursors"]["after"]
    fake.set_faults(empty_page_rate=0.0)
    body = get(fake, f"{world['form']}/leads", token, limit=1000).json()
    assert len(body["data"]) == 100  # capped silently at max_page_size


def test_generate_leads_is_messy_and_deterministic() -> None:
    def run() -> list[dict[str, Any]]:
        fg = FakeGraph(seed=3)
        page = fg.add_page()
        form = fg.add_form(page.id)
        fg.generate_leads(form, 400, start=T0, end=T0 + 1000)
        return [json.loads("{" + ",".join(fg.leads[i].values()) + "}") for i in sorted(fg.leads)]

    first = run()
    assert first == run()
    values = [v for lead in first for f in lead["field_data"] for v in f["values"]]
    text = " ".join(values)
    assert any(ch in text for ch in "łśżđ") and "+48" in text and "+84" in text
    assert any(v != v.strip() for v in values)  # e-mails with stray spaces
    assert any("@" not in v and "." in v for v in values)  # a few invalid e-mails or phones
    assert any(len(f["values"]) == 2 for lead in first for f in lead["field_data"])
    assert {"ig", "fb"} == {lead["platform"] for lead in first}
    assert any(lead["is_organic"] for lead in first)


# ---------------------------------------------------------------- throttling and usage
def test_throttle_is_400_80005_with_buc_header(fake: FakeGraph, world: dict[str, Any]) -> None:
    token, page = world["page"].token, world["page"]
    fake.throttle(page.id, 60, regain_minutes=7)
    resp = get(fake, f"{world['form']}/leads", token)
    assert resp.status_code == 400 and error(resp)["code"] == 80005
    buc = json.loads(resp.headers["X-Business-Use-Case-Usage"])
    assert buc[page.id][0]["estimated_time_to_regain_access"] == 7
    assert buc[page.id][0]["type"] == "leadgen"
    other = world["other"]
    assert get(fake, f"{world['other_form']}/leads", other.token).status_code == 200


def test_throttle_window_ends(world: dict[str, Any]) -> None:
    now = [float(T0)]
    fg = FakeGraph(clock=lambda: now[0])
    with fg:
        page = fg.add_page(business_id="42")
        form = fg.add_form(page.id)
        fg.throttle("42", 30, code=17)
        assert error(get(fg, f"{form}/leads", page.token))["code"] == 17
        now[0] += 31
        assert get(fg, f"{form}/leads", page.token).status_code == 200


def test_usage_headers_on_success_and_on_error(fake: FakeGraph, world: dict[str, Any]) -> None:
    token = world["page"].token
    ok = get(fake, f"{world['form']}/leads", token)
    bad = get(fake, f"{world['form']}/leads", token, filtering="not json")
    for resp in (ok, bad):
        assert "X-App-Usage" in resp.headers
        buc = json.loads(resp.headers["X-Business-Use-Case-Usage"])
        assert buc[world["page"].id][0]["estimated_time_to_regain_access"] == 0
    assert bad.status_code == 400


def test_budget_grows_usage_then_throttles(fake: FakeGraph, world: dict[str, Any]) -> None:
    token, page = world["page"].token, world["page"]
    fake.set_budget(page.id, 4)
    pcts = []
    for _ in range(4):
        resp = get(fake, f"{world['form']}/leads", token)
        pcts.append(json.loads(resp.headers["X-Business-Use-Case-Usage"])[page.id][0]["call_count"])
    assert pcts == [25, 50, 75, 100]
    assert error(get(fake, f"{world['form']}/leads", token))["code"] == 80005


def test_transient_errors_are_500(fake: FakeGraph, world: dict[str, Any]) -> None:
    fake.set_faults(error_rate=1.0)
    resp = get(fake, f"{world['form']}/leads", world["page"].token)
    err = error(resp)
    assert resp.status_code == 500 and err["code"] in (1, 2) and err["is_transient"] is True


# ---------------------------------------------------------------- webhooks
class Receiver:
    """A tiny webhook endpoint: answers POSTs with queued statuses, echoes the challenge."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[bytes] = []
        self.signatures: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                ok = q.get("hub.mode") == "subscribe" and q.get("hub.verify_token") == "s3cret"
                body = q.get("hub.challenge", "").encode() if ok else b"no"
                self.send_response(200 if ok else 403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.bodies.append(raw)
                    receiver.signatures.append(self.headers.get("X-Hub-Signature-256", ""))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def leadgen_ids(self) -> list[str]:
        return [
            ch["value"]["leadgen_id"]
            for raw in self.bodies
            for e in json.loads(raw)["entry"]
            for ch in e["changes"]
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def install(fake: FakeGraph, page: FakePage) -> None:
    resp = requests.post(
        f"{fake.base_url}/v26.0/{page.id}/subscribed_apps",
        timeout=5,
        data={
            "access_token": page.token,
            "appsecret_proof": proof(page.token),
            "subscribed_fields": "leadgen",
        },
    )
    assert resp.json() == {"success": True}


def test_test_lead_creates_lead_and_signed_webhook(
    fake: FakeGraph, world: dict[str, Any], receiver: Receiver
) -> None:
    page = world["page"]
    fake.subscribe_webhook(receiver.url)
    install(fake, page)
    apps = get(fake, f"{page.id}/subscribed_apps", page.token).json()["data"]
    assert apps[0]["subscribed_fields"] == ["leadgen"]
    field_data = [{"name": "email", "values": ["t@example.com"]}]
    url = f"{fake.base_url}/v26.0/{world['form']}/test_leads"
    auth = {"access_token": page.token, "appsecret_proof": proof(page.token)}
    resp = requests.post(url, data={**auth, "field_data": json.dumps(field_data)}, timeout=5)
    lead_id = resp.json()["id"]
    assert 15 <= len(lead_id) <= 16
    again = requests.post(url, data={**auth, "field_data": json.dumps(field_data)}, timeout=5)
    assert again.status_code == 400  # one test lead per form
    fake.flush_webhooks(5)
    raw = receiver.bodies[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(receiver.signatures[0], expected)
    payload = json.loads(raw)
    assert payload["object"] == "page"
    value = payload["entry"][0]["changes"][0]["value"]
    assert value["leadgen_id"] == lead_id and value["form_id"] == world["form"]
    assert isinstance(value["created_time"], int)
    assert get(fake, lead_id, page.token).json()["field_data"] == field_data


def test_no_webhook_for_pages_without_the_app(
    fake: FakeGraph, world: dict[str, Any], receiver: Receiver
) -> None:
    fake.subscribe_webhook(receiver.url)
    fake.add_lead(world["form"], {"email": "a@b.c"})
    fake.flush_webhooks(5)
    assert receiver.bodies == []


def test_webhook_retried_after_receiver_500s(
    fake: FakeGraph, world: dict[str, Any], receiver: Receiver
) -> None:
    receiver.statuses = [500, 500, 503]
    fake.set_faults(retry_schedule=[0.0, 0.05, 0.05, 0.05])
    fake.subscribe_webhook(receiver.url)
    fake.install_app(world["page"].id)
    lead = fake.add_lead(world["form"], {"email": "a@b.c"})
    fake.flush_webhooks(5)
    assert receiver.leadgen_ids() == [lead] * 4
    stats = fake.stats()["webhooks"]
    assert stats["delivered"] == 1 and stats["failed_attempts"] == 3


def test_webhook_drop_duplicate_and_batch_faults(
    fake: FakeGraph, world: dict[str, Any], receiver: Receiver
) -> None:
    fake.subscribe_webhook(receiver.url)
    fake.install_app(world["page"].id)
    fake.set_faults(duplicate_rate=1.0)
    lead = fake.add_lead(world["form"], {"email": "a@b.c"})
    fake.flush_webhooks(5)
    assert receiver.leadgen_ids() == [lead, lead]
    receiver.bodies.clear()
    fake.set_faults(duplicate_rate=0.0, drop_rate=1.0)
    fake.add_lead(world["form"], {"email": "a@b.c"})
    fake.flush_webhooks(5)
    assert receiver.bodies == [] and fake.stats()["webhooks"]["dropped"] == 1
    fake.set_faults(drop_rate=0.0, batch=True)
    ids = fake.generate_leads(world["form"], 5, start=T0, end=T0 + 5, notify=True)
    fake.flush_webhooks(5)
    assert len(receiver.bodies) == 1 and sorted(receiver.leadgen_ids()) == sorted(ids)


def test_verify_webhook_endpoint_handshake(fake: FakeGraph, receiver: Receiver) -> None:
    assert fake.verify_webhook_endpoint(receiver.url, "s3cret") is True
    assert fake.verify_webhook_endpoint(receiver.url, "wrong") is False


# ---------------------------------------------------------------- control routes
def test_control_routes(fake: FakeGraph, world: dict[str, Any]) -> None:
    base = f"{fake.base_url}/_fake"
    body = {"form_id": world["form"], "n": 30, "start": T0, "end": T0 + 100, "notify": False}
    assert requests.post(f"{base}/generate", json=body, timeout=5).json()["count"] == 30
    requests.post(f"{base}/faults", json={"latency": 0.0, "empty_page_rate": 0.0}, timeout=5)
    requests.post(f"{base}/throttle", json={"scope_id": world["page"].id, "seconds": 5}, timeout=5)
    assert error(get(fake, f"{world['form']}/leads", world["page"].token))["code"] == 80005
    stats = requests.get(f"{base}/stats", timeout=5).json()
    assert stats["calls"]["GET leads"] == 1
    pages = requests.get(f"{base}/world", timeout=5).json()["pages"]
    assert world["page"].token in {p["token"] for p in pages}


# ---------------------------------------------------------------- the SDK, unchanged
@pytest.fixture
def sdk(fake: FakeGraph, world: dict[str, Any]) -> Any:
    from facebook_business.api import FacebookAdsApi

    api = FacebookAdsApi.init(
        fake.app_id, SECRET, world["page"].token, api_version="v26.0", crash_log=False
    )
    api._session.GRAPH = fake.base_url
    return api


def test_sdk_reads_forms_leads_and_one_lead(
    fake: FakeGraph, world: dict[str, Any], sdk: Any
) -> None:
    from facebook_business.adobjects.lead import Lead
    from facebook_business.adobjects.leadgenform import LeadgenForm
    from facebook_business.adobjects.page import Page

    ids = fake.generate_leads(world["form"], 230, start=T0, end=T0 + 1000)
    forms = list(Page(world["page"].id).get_lead_gen_forms(fields=["id", "name", "leads_count"]))
    assert [f["id"] for f in forms] == [world["form"]] and forms[0]["leads_count"] == 230
    rule = [{"field": "time_created", "operator": "GREATER_THAN_OR_EQUAL", "value": T0}]
    leads = LeadgenForm(world["form"]).get_leads(
        fields=["id", "created_time", "field_data", "ad_id"],
        params={"filtering": rule, "limit": 100},
    )
    got = [lead["id"] for lead in leads]
    assert sorted(got) == sorted(ids)
    one = Lead(ids[0]).api_get(fields=["id", "field_data", "form_id"])
    assert one["form_id"] == world["form"]


def test_sdk_throttle_error_exposes_code_and_buc_header(
    fake: FakeGraph, world: dict[str, Any], sdk: Any
) -> None:
    from facebook_business.adobjects.leadgenform import LeadgenForm
    from facebook_business.exceptions import FacebookRequestError

    fake.throttle(world["page"].id, 60, regain_minutes=3)
    with pytest.raises(FacebookRequestError) as info:
        LeadgenForm(world["form"]).get_leads(fields=["id"])
    assert info.value.api_error_code() == 80005
    headers = info.value.http_headers()
    buc = json.loads(headers["X-Business-Use-Case-Usage"])
    assert buc[world["page"].id][0]["estimated_time_to_regain_access"] == 3


def test_sdk_cursor_stops_at_an_empty_page_that_has_next(
    fake: FakeGraph, world: dict[str, Any], sdk: Any
) -> None:
    """The trap the emulator exists to show: the SDK's Cursor ends on an empty page."""
    from facebook_business.adobjects.leadgenform import LeadgenForm

    fake.generate_leads(world["form"], 50, start=T0, end=T0 + 100)
    fake.set_faults(empty_page_rate=1.0)
    assert list(LeadgenForm(world["form"]).get_leads(fields=["id"])) == []


def test_sdk_creates_a_test_lead(fake: FakeGraph, world: dict[str, Any], sdk: Any) -> None:
    from facebook_business.adobjects.leadgenform import LeadgenForm

    field_data = [{"name": "full_name", "values": ["Łukasz Wiśniewski"]}]
    lead = LeadgenForm(world["form"]).create_test_lead(params={"field_data": field_data})
    body = get(fake, lead["id"], world["page"].token, fields="field_data,is_organic").json()
    assert body == {"field_data": field_data, "is_organic": True}


def test_webhook_fail_first_n_attempts(
    fake: FakeGraph, world: dict[str, Any], receiver: Receiver
) -> None:
    fake.set_faults(fail_first_n=2, retry_schedule=[0.0, 0.05, 0.05])
    fake.subscribe_webhook(receiver.url)
    fake.install_app(world["page"].id)
    lead = fake.add_lead(world["form"], {"email": "a@b.c"})
    fake.flush_webhooks(5)
    assert receiver.leadgen_ids() == [lead]
    stats = fake.stats()["webhooks"]
    assert (stats["attempts"], stats["failed_attempts"], stats["delivered"]) == (3, 2, 1)


@pytest.mark.parametrize("subcode", [460, 458])
def test_other_token_subcodes(fake: FakeGraph, world: dict[str, Any], subcode: int) -> None:
    fake.expire_token(world["page"].token, subcode=subcode)
    err = error(get(fake, f"{world['form']}/leads", world["page"].token))
    assert (err["code"], err["error_subcode"]) == (190, subcode)


def test_paging_is_fast_enough_for_benchmarks(fake: FakeGraph, world: dict[str, Any]) -> None:
    import time

    fake.generate_leads(world["form"], 20_000, start=T0, end=T0 + 86400 * 30)
    started = time.perf_counter()
    got = all_leads(fake, world["form"], world["page"].token, limit=100)
    assert len(got) == 20_000
    assert time.perf_counter() - started < 10  # 200 pages; ~0.5 s on a dev box


def test_the_printed_config_section_is_a_valid_facebook_section() -> None:
    from adapters.facebook.config import FacebookConfig
    from adapters.facebook.fake import build_demo_world, config_section

    graph = FakeGraph(seed=3)
    world = build_demo_world(graph, pages=2, forms=1, leads=2)
    section = FacebookConfig.model_validate(config_section(graph, world)["facebook"])
    assert [p.id for p in section.pages] == [p["id"] for p in world["pages"]]
