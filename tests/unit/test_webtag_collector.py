"""The web tag's collector through the daemon's real app (starlette's TestClient), on
both stores: validation, CORS, limits, bots, idempotent retries, and identify turning
a visitor into a contact with its earlier visits."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from adapters.webtag import plugin
from adapters.webtag.config import WebtagConfig
from adapters.webtag.identify import drain, purge
from connector.config import config_model
from connector.runtime.daemon import Daemon
from connector.runtime.server import build_app
from connector.store import Store, visitors
from connector.store.contacts import show_contact

ORIGIN = "https://www.example.com"
KEY = "site-key-0001"
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36"


def daemon(store: Store, **extra: Any) -> Daemon:
    section = {
        "sites": [{"name": "www", "key": KEY, "allowed_origins": [ORIGIN], "region": "US"}],
        **extra,
    }
    config = config_model().model_validate({"store": {"url": store.url}, "webtag": section})
    return Daemon(config, store, {"webtag": plugin})  # type: ignore[dict-item]


def client(d: Daemon) -> TestClient:
    return TestClient(build_app(d, d.plugins), client=("203.0.113.7", 5000))


def view(event_id: str, url: str = "https://www.example.com/", **extra: Any) -> dict[str, Any]:
    return {"type": "page_view", "id": event_id, "at": int(time.time() * 1000), "url": url, **extra}


def batch(*events: dict[str, Any], visitor: str = "visitor-aaaa-0001") -> bytes:
    return orjson.dumps({"site": KEY, "visitor": visitor, "events": list(events)})


def post(http: TestClient, body: bytes, origin: str = ORIGIN, ua: str = UA) -> Any:
    return http.post(
        "/collect",
        content=body,
        headers={"origin": origin, "user-agent": ua, "content-type": "text/plain"},
    )


def config_of(d: Daemon) -> WebtagConfig:
    found = d.config.webtag
    assert isinstance(found, WebtagConfig)
    return found


def test_page_views_are_stored_once_with_utm_and_meta_ids(store: Store) -> None:
    http = client(daemon(store))
    url = (
        "https://www.example.com/landing?utm_source=facebook&utm_campaign=spring&fbclid=IwAR2F4-Ab"
    )
    fbc = "fb.1.1764590000000.IwAR2F4-Ab"
    body = batch(view("event-00000001", url, fbc=fbc, fbp="fb.1.1764590000000.1234567"))
    first = post(http, body)
    assert first.status_code == 200, first.text
    assert first.headers["access-control-allow-origin"] == ORIGIN
    assert first.json() == {"accepted": 1}
    assert post(http, body).json() == {"accepted": 0}  # the snippet's retry: stored once
    seen = visitors.visitor(store, "www", "visitor-aaaa-0001")
    assert seen is not None and len(seen["page_views"]) == 1
    assert seen["utm"] == {"utm_source": "facebook", "utm_campaign": "spring"}
    # Meta's builder keeps the browser's cookie (same click id) and adds its appendix.
    assert seen["fbc"].startswith(fbc + ".")
    assert seen["fbp"].startswith("fb.1.1764590000000.1234567")
    assert seen["contact_id"] is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        orjson.dumps({"site": KEY, "visitor": "short", "events": [view("event-00000001")]}),
        batch(view("event-00000001", url="javascript:alert(1)")),
        batch({**view("event-00000001"), "type": "purchase"}),
        batch({**view("event-00000001"), "extra": "field"}),
        batch(view("event-00000001", fbc="not-a-meta-id")),
        orjson.dumps({"site": KEY, "visitor": "visitor-aaaa-0001", "events": []}),
    ],
)
def test_malformed_batches_are_400_counted_and_store_nothing(store: Store, body: bytes) -> None:
    http = client(daemon(store))
    answer = post(http, body)
    assert answer.status_code == 400
    assert (
        'leadsync_webtag_requests_total{outcome="malformed",site="?"}' in http.get("/metrics").text
    )
    assert visitors.counts(store)["page_views"] == 0


def test_cors_preflight_and_foreign_origins(store: Store) -> None:
    http = client(daemon(store))
    ok = http.options(
        "/collect", headers={"origin": ORIGIN, "access-control-request-method": "POST"}
    )
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in ok.headers["access-control-allow-methods"]
    bad = http.options("/collect", headers={"origin": "https://evil.example"})
    assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers
    refused = post(http, batch(view("event-00000001")), origin="https://evil.example")
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    assert (
        post(http, batch(view("event-00000002")).replace(KEY.encode(), b"other-key-01")).status_code
        == 403
    )
    assert visitors.counts(store)["page_views"] == 0


def test_limits_bots_and_rate(store: Store) -> None:
    http = client(daemon(store, max_events=3, max_body=2000, rate_per_ip=0.001, burst_per_ip=5))
    many = batch(*(view(f"event-0000000{i}") for i in range(4)))
    assert post(http, many).status_code == 400
    huge = batch(
        view("event-00000001", title="x" * 250, referrer="https://r.example/" + "y" * 1900)
    )
    assert post(http, huge).status_code == 413
    assert (
        post(
            http, batch(view("event-00000003")), ua="Googlebot/2.1 (+http://google.com/bot)"
        ).status_code
        == 204
    )
    assert post(http, batch(view("event-00000004")), ua="").status_code == 204
    assert visitors.counts(store)["page_views"] == 0  # bots dropped, nothing stored
    # 5 requests allowed in a burst; these were 2 (the bots are dropped before the
    # limiter): 3 more pass, then 429.
    codes = [post(http, batch(view(f"event-1000000{i}"))).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]


def test_identify_links_the_visitor_and_reattributes_earlier_visits(store: Store) -> None:
    d = daemon(store)
    http = client(d)
    url = "https://www.example.com/?utm_source=newsletter&utm_medium=email&fbclid=AbC"
    post(http, batch(view("event-00000001", url, fbc="fb.1.1764590000000.AbC")))
    post(http, batch(view("event-00000002", "https://www.example.com/pricing")))
    identify = {
        "type": "identify",
        "id": "event-00000003",
        "at": int(time.time() * 1000),
        "url": "https://www.example.com/signup",
        "traits": {"email": " Ada@Example.com ", "name": "Ada Lovelace", "phone": "(650) 555-1212"},
    }
    answer = post(http, batch(view("event-00000004", "https://www.example.com/signup"), identify))
    assert answer.json() == {"accepted": 2}
    stats = drain(d, config_of(d))
    assert stats.created == 1
    seen = visitors.visitor(store, "www", "visitor-aaaa-0001")
    assert seen is not None and seen["contact_id"] is not None
    contact = show_contact(store, seen["contact_id"])
    assert contact["email"] == "ada@example.com"
    assert contact["custom"]["utm_source"] == "newsletter"
    assert contact["custom"]["fbc"].startswith("fb.1.1764590000000.AbC")
    visits = [i for i in contact["interactions"] if i["kind"] == "page_view"]
    assert sorted(v["data"]["event_id"] for v in visits) == [
        "event-00000001",
        "event-00000002",
        "event-00000004",
    ]
    # A later view lands on the contact at once; a retried identify changes nothing.
    post(http, batch(view("event-00000005", "https://www.example.com/thanks"), identify))
    again = drain(d, config_of(d))
    assert again.created == 0 and again.unchanged == 1
    contact = show_contact(store, seen["contact_id"])
    assert len([i for i in contact["interactions"] if i["kind"] == "page_view"]) == 4


def test_anonymous_visitors_past_retention_are_deleted(store: Store) -> None:
    d = daemon(store)
    http = client(d)
    post(http, batch(view("event-00000001"), visitor="visitor-anon-0001"))
    identify = {
        "type": "identify", "id": "event-00000002", "at": int(time.time() * 1000),
        "url": "https://www.example.com/", "traits": {"email": "kept@example.com"},
    }  # fmt: skip
    post(http, batch(view("event-00000003"), identify, visitor="visitor-known-001"))
    drain(d, config_of(d))
    assert purge(d, config_of(d)) == 0  # both seen just now, well within 90 days
    assert visitors.purge_anonymous(store, datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert visitors.visitor(store, "www", "visitor-anon-0001") is None
    assert visitors.visitor(store, "www", "visitor-known-001") is not None
    # The job's cutoff is the configured retention: 0.00001 days is 0.864 s.
    short = daemon(store, anonymous_retention_days=0.00001)
    post(client(short), batch(view("event-00000004"), visitor="visitor-anon-0002"))
    assert purge(short, config_of(short)) == 0
    time.sleep(1.0)
    assert purge(short, config_of(short)) == 1
    assert visitors.visitor(store, "www", "visitor-anon-0002") is None
    assert visitors.visitor(store, "www", "visitor-known-001") is not None


def test_meta_ids_follow_the_latest_click_and_are_never_invented() -> None:
    from adapters.webtag.fbparams import click_ids

    old = "fb.1.1700000000000.OldClick"
    # A returning visitor from a new ad: the new click id, created now, in milliseconds.
    before = int(time.time() * 1000)
    fresh = click_ids("https://www.example.com/?fbclid=NewClick_AbC", old, None)
    assert fresh.fbc is not None
    prefix, index, created, click = fresh.fbc.split(".")[:4]
    assert (prefix, index, click) == ("fb", "1", "NewClick_AbC")
    assert before <= int(created) <= int(time.time() * 1000)
    # The same click again keeps the cookie; no fbclid and no cookie: no fbc at all.
    assert click_ids("https://www.example.com/?fbclid=OldClick", old, None).fbc.startswith(old)  # type: ignore[union-attr]
    assert click_ids("https://www.example.com/", None, None).fbc is None
    # Without a browser `_fbp`, none is made up (it would match nothing at Meta).
    assert click_ids("https://www.example.com/", None, None).fbp is None


def test_the_snippet_command_prints_the_tag_with_key_and_collector(tmp_path: Path) -> None:
    path = tmp_path / "leadsync.yaml"
    path.write_text(
        "webtag:\n  public_url: https://tag.example.com\n  sites:\n"
        "    - {name: www, key: www-key-0001, allowed_origins: ['https://www.example.com'],"
        " consent_required: true, capture_forms: ['#signup']}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "connector", "-c", str(path), "webtag", "snippet", "--site", "www"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"https://tag.example.com/collect/snippet.js"' in out
    assert '"site":"www-key-0001","collector":"https://tag.example.com/collect"' in out
    assert '"consent":true' in out and '"forms":["#signup"]' in out


def test_the_snippet_stays_small_and_its_tag_cannot_close_the_script_early() -> None:
    import gzip

    from adapters.webtag.collector import snippet_source
    from adapters.webtag.snippet import tag

    assert len(gzip.compress(snippet_source(), 9)) <= 3 * 1024  # the budget
    config = WebtagConfig.model_validate(
        {
            "public_url": "https://t.example.com",
            "sites": [
                {
                    "name": "www",
                    "key": "www-key-0001",
                    "allowed_origins": [ORIGIN],
                    "capture_forms": ["</script><script>alert(1)//"],
                }
            ],
        }
    )
    html = tag(config, "www")
    assert html.count("</script>") == 1 and html.endswith("</script>")
    with pytest.raises(ValueError, match="no site 'shop'"):
        tag(config, "shop")


def test_an_identify_nothing_identifies_is_quarantined_and_the_visitor_stays_anonymous(
    store: Store,
) -> None:
    from connector.runtime import inbox
    from connector.store.quarantine import entries

    d = daemon(store)
    http = client(d)
    identify = {
        "type": "identify",
        "id": "event-00000009",
        "at": int(time.time() * 1000),
        "url": "https://www.example.com/signup",
        "traits": {"email": "not-an-email", "name": "Nobody Known"},
    }
    assert post(http, batch(view("event-00000008"), identify)).status_code == 200
    stats = drain(d, config_of(d))
    assert stats.quarantined == 1 and stats.created == 0
    assert inbox.pending(store, "webtag") == 0  # handled, not retried forever
    seen = visitors.visitor(store, "www", "visitor-aaaa-0001")
    assert seen is not None and seen["contact_id"] is None
    found, total = entries(store, source="webtag")
    assert total == 1 and found[0]["ref"] == "identify event-00000009 on www"
    # `quarantine retry` reads it again as the same lead (same source id, same traits).
    again = plugin.remap(found[0]["raw"], {"kind": "webtag", "site": "www"}, found[0]["ref"])
    assert again.source_id == "www:event-00000009"
    assert again.fields == {"email": "not-an-email", "first_name": "Nobody", "last_name": "Known"}


def test_after_a_merge_new_visits_land_on_the_survivor(store: Store) -> None:
    from connector.model import Lead
    from connector.pipeline import Pipeline
    from connector.store.contacts import merge_contacts

    d = daemon(store)
    http = client(d)
    identify = {
        "type": "identify",
        "id": "event-00000002",
        "at": int(time.time() * 1000),
        "url": "https://www.example.com/",
        "traits": {"email": "merged@example.com"},
    }
    post(http, batch(view("event-00000001"), identify))
    drain(d, config_of(d))
    seen = visitors.visitor(store, "www", "visitor-aaaa-0001")
    assert seen is not None
    absorbed = seen["contact_id"]
    other = Lead("crm", "row 1", {"email": "other@example.com"}, source_id="1")
    Pipeline(store, workers=0).ingest("crm", [other])
    survivor = next(c["id"] for c in show_contact_list(store) if c["email"] == "other@example.com")
    merge_contacts(store, survivor, absorbed, actor="test")
    post(http, batch(view("event-00000003", "https://www.example.com/after-merge")))
    contact = show_contact(store, survivor)
    urls = [i["data"]["url"] for i in contact["interactions"] if i["kind"] == "page_view"]
    assert urls[-1] == "https://www.example.com/after-merge"
    assert len(urls) == 2  # the visit from before the merge came along with it


def show_contact_list(store: Store) -> list[dict[str, Any]]:
    from connector.store.contacts import list_contacts

    return list_contacts(store, limit=100)[1]


def test_a_body_without_its_length_is_capped_and_a_proxy_header_names_the_client(
    store: Store,
) -> None:
    d = daemon(
        store, max_body=2000, rate_per_ip=0.001, burst_per_ip=1, client_ip_header="X-Forwarded-For"
    )
    http = client(d)
    big = batch(view("event-00000001", title="x" * 250, referrer="https://r.example/" + "y" * 1900))
    # Streamed (no content-length to refuse it by): refused by what is read (the reader
    # itself, piece by piece, is tested in test_webtag_asgi.py).
    streamed = http.post(
        "/collect",
        content=iter([big[:1000], big[1000:]]),
        headers={"origin": ORIGIN, "user-agent": UA, "content-type": "text/plain"},
    )
    assert streamed.status_code == 413
    assert streamed.headers["access-control-allow-origin"] == ORIGIN  # the page can read it

    def from_ip(ip: str, event_id: str) -> int:
        return int(
            http.post(
                "/collect",
                content=batch(view(event_id)),
                headers={"origin": ORIGIN, "user-agent": UA, "x-forwarded-for": f"{ip}, 10.0.0.1"},
            ).status_code
        )

    # One request each a burst: the header's first address is the client, not the proxy.
    assert [
        from_ip("198.51.100.1", "event-00000002"),
        from_ip("198.51.100.2", "event-00000003"),
    ] == [200, 200]
    assert from_ip("198.51.100.1", "event-00000004") == 429
    assert visitors.counts(store)["page_views"] == 2
