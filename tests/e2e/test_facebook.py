"""The Facebook source end to end: the facebook-business SDK over loopback HTTP against
the Graph API emulator (adapters/facebook/fake/), into a real store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
import yaml
from sqlalchemy import create_engine, func, select
from starlette.applications import Starlette

from adapters.facebook import FacebookPlugin
from adapters.facebook.config import FacebookConfig
from adapters.facebook.fake import FakeGraph
from adapters.facebook.source import FacebookSource
from adapters.facebook.webhook import drain, fetch_pool, signature
from connector.pipeline import Pipeline
from connector.runtime import health, inbox
from connector.runtime.metrics import THROTTLED_SECONDS
from connector.store import Store
from connector.store.tables import contacts, leads, quarantine, webhook_deliveries

DAY = 86400.0
# The generated people are from MY, PL, VN and US, so forms ask the country: without it
# a national number from elsewhere cannot be read (it is quarantined, not guessed).
QUESTIONS = [
    {"key": "full_name", "label": "Full name", "type": "FULL_NAME"},
    {"key": "email", "label": "Email", "type": "EMAIL"},
    {"key": "phone_number", "label": "Phone number", "type": "PHONE"},
    {"key": "country", "label": "Country", "type": "COUNTRY"},
    {"key": "budget", "label": "Budget", "type": "CUSTOM"},
]


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    graph = FakeGraph(seed=11)
    graph.start()
    yield graph
    graph.stop()


def fb_config(fake: FakeGraph, *pages: Any, **extra: Any) -> FacebookConfig:
    return FacebookConfig.model_validate(
        {
            "app_id": fake.app_id,
            "app_secret": fake.app_secret,
            "graph_url": fake.base_url,
            "verify_token": "verify-me",
            "pages": [{"id": p.id, "access_token": p.token} for p in pages],
            "region": "MY",
            **extra,
        }
    )


def reporter(store: Store) -> Any:
    return lambda name, state, reason=None, **kw: health.report(store, name, state, reason, **kw)


def count(store: Store, table: Any, *where: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def test_poll_stores_every_lead_once_with_its_ad_context(fake: FakeGraph, store: Store) -> None:
    page = fake.add_page("Shop")
    campaign = fake.add_campaign(page.id, name="Raya sale")
    adset = fake.add_adset(
        campaign, name="KL women 25-40", interests=[{"id": "6003", "name": "Yoga"}]
    )
    ad = fake.add_ad(adset, name="Video ad")
    forms = [fake.add_form(page.id, name=f"Form {i}", questions=QUESTIONS) for i in range(2)]
    now = time.time()
    made = [
        lead_id
        for form in forms
        for lead_id in fake.generate_leads(form, 120, start=now - 3 * DAY, end=now - 60, ads=[ad])
    ]
    fake.faults.empty_page_rate = 0.3  # empty pages that still carry `next`
    source = FacebookSource(
        fb_config(fake, page, page_size=25), store.catalogue, report=reporter(store)
    )
    stats = Pipeline(store, workers=0).run(source)

    assert stats.rows == len(made) == 240
    # The generator's broken leads have one bad email or phone each and a good other
    # one: the person is stored, the bad value kept as a field issue.
    assert stats.quarantined == 0 and 0 < stats.field_issues < 30
    assert count(store, leads) == len(made)
    with store.engine.connect() as conn:
        refs = list(conn.execute(select(quarantine.c.ref, quarantine.c.field)))
        contexts = [r[0] for r in conn.execute(select(leads.c.context))]
    assert all(ref.startswith("lead ") for ref, _ in refs)
    with_ad = [c for c in contexts if c.get("ad_id") == ad]
    assert with_ad, "no lead carries its ad"
    assert {c["ad_name"] for c in with_ad} == {"Video ad"}
    assert all(c["interests"] == ["Yoga"] and c["form_name"].startswith("Form") for c in with_ad)
    assert all(c["campaign_name"] == "Raya sale" for c in with_ad)

    # A poll that finds nothing new costs one call per form (and stores nothing new).
    fake.faults.empty_page_rate = 0.0
    fake.reset_calls()
    again = Pipeline(store, workers=0).run(source)
    assert fake.total_calls() == len(forms)
    assert (again.created, again.updated, again.merged) == (0, 0, 0)


def test_throttle_pauses_one_page_and_the_others_go_on(fake: FakeGraph, store: Store) -> None:
    busy, calm = fake.add_page("Busy"), fake.add_page("Calm")
    now = time.time()
    for page in (busy, calm):
        fake.generate_leads(fake.add_form(page.id, name="F"), 30, start=now - DAY, end=now - 60)
    source = FacebookSource(fb_config(fake, busy, calm), store.catalogue, report=reporter(store))
    source.discover()
    fake.throttle(busy.id, 600, code=80005, regain_minutes=3)
    throttled = THROTTLED_SECONDS.labels("facebook")._value.get()

    Pipeline(store, workers=0).run(source)

    assert THROTTLED_SECONDS.labels("facebook")._value.get() - throttled == 180  # /metrics

    rows = {r["source"]: r for r in health.read(store)}
    assert rows[f"facebook:{busy.id}"]["state"] == "paused"
    until = rows[f"facebook:{busy.id}"]["paused_until"]
    assert 170 < (until - datetime.now(UTC)).total_seconds() <= 181  # Meta's 3 minutes
    assert rows[f"facebook:{calm.id}"]["state"] == "ok"
    assert count(store, leads) > 0
    fake.reset_calls()
    Pipeline(store, workers=0).run(source)  # the paused Page is not called at all
    assert fake.total_calls() == 1  # the calm Page's one form


def test_expired_token_marks_the_page_failing_with_what_to_do(
    fake: FakeGraph, store: Store
) -> None:
    page = fake.add_page("Shop")
    fake.generate_leads(fake.add_form(page.id), 5, start=time.time() - DAY, end=time.time())
    source = FacebookSource(fb_config(fake, page), store.catalogue, report=reporter(store))
    source.discover()
    fake.expire_token(page.token, subcode=463)
    Pipeline(store, workers=0).run(source)
    [row] = health.read(store)
    assert row["state"] == "failing" and "renew the access token" in row["reason"]
    assert count(store, leads) == 0


@dataclass
class StubRuntime:
    """Just enough of the daemon for the webhook routes and the drain."""

    store: Store
    config: Any
    stopping: threading.Event = field(default_factory=threading.Event)
    replica: str = "test"
    woken: list[str] = field(default_factory=list)

    def report(self, source: str, state: Any, reason: str | None = None, **kw: Any) -> None:
        health.report(self.store, source, state, reason, **kw)

    def wake(self, job_id: str) -> None:
        self.woken.append(job_id)


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


def test_webhooks_are_verified_stored_and_the_poll_catches_what_they_miss(
    fake: FakeGraph, store: Store
) -> None:
    page = fake.add_page("Shop")
    form = fake.add_form(page.id, name="Contact us")
    config = fb_config(fake, page)
    runtime = StubRuntime(store, type("Config", (), {"facebook": config})())
    plugin = FacebookPlugin()
    app = Starlette(routes=list(plugin.routes(runtime)))
    with serving(app) as base:
        url = base + config.webhook_path
        assert fake.verify_webhook_endpoint(url, "verify-me")
        assert not fake.verify_webhook_endpoint(url, "wrong")

        body = json.dumps({"object": "page", "entry": []}).encode()
        forged = requests.post(url, data=body, headers={"X-Hub-Signature-256": "sha256=00"})
        unsigned = requests.post(url, data=body)
        assert (forged.status_code, unsigned.status_code) == (403, 403)
        assert count(store, webhook_deliveries) == 0  # nothing stored

        good = requests.post(
            url, data=body, headers={"X-Hub-Signature-256": signature(fake.app_secret, body)}
        )
        assert good.status_code == 200 and runtime.woken == ["facebook.webhooks"]

        installed = requests.post(
            f"{fake.base_url}/v26.0/{page.id}/subscribed_apps",
            params={
                "subscribed_fields": "leadgen",
                "access_token": page.token,
                "appsecret_proof": _proof(fake, page.token),
            },
        )
        assert installed.json() == {"success": True}
        fake.subscribe_webhook(url, verify_token="verify-me")
        fake.faults.drop_rate = 0.3
        fake.faults.duplicate_rate = 0.5
        made = [
            fake.add_lead(form, {"email": f"p{i}@example.com", "full_name": f"Person {i}"})
            for i in range(20)
        ]
        fake.flush_webhooks()
    source = plugin.source(runtime, config)
    with fetch_pool() as pool:
        stats = drain(runtime, source, lambda: Pipeline(store, workers=0), pool)
    delivered = count(store, leads)
    assert 0 < delivered < 20  # some webhooks were dropped
    assert stats.created == delivered  # duplicates changed nothing
    assert inbox.pending(store) == 0
    Pipeline(store, workers=0).run(source)  # polling is the truth
    with store.engine.connect() as conn:
        stored = set(conn.execute(select(leads.c.source_id)).scalars())
    assert stored == set(made)


def _proof(fake: FakeGraph, token: str) -> str:
    import hashlib
    import hmac

    return hmac.new(fake.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


@pytest.mark.slow
def test_backfill_command_is_resumable_after_kill(fake: FakeGraph, tmp_path: Path) -> None:
    page = fake.add_page("Shop")
    now = time.time()
    forms = [fake.add_form(page.id, name=f"F{i}", questions=QUESTIONS) for i in range(3)]
    made = {
        lead
        for form in forms
        for lead in fake.generate_leads(form, 400, start=now - 20 * DAY, end=now - 3600, bad_rate=0)
    }
    cfg = tmp_path / "leadsync.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "facebook": {
                    "app_id": fake.app_id,
                    "app_secret": fake.app_secret,
                    "graph_url": fake.base_url,
                    "pages": [{"id": page.id, "access_token": page.token}],
                    "page_size": 20,
                }
            }
        )
    )
    url = f"sqlite:///{tmp_path / 'store.db'}"
    since = datetime.fromtimestamp(now - 30 * DAY, UTC).date().isoformat()
    cmd = [sys.executable, "-m", "connector", "-c", str(cfg), "--store", url]
    backfill = [*cmd, "backfill", "facebook", "--since", since, "--json"]
    fake.faults.latency = 0.02  # slow enough to stop it in the middle
    proc = subprocess.Popen(backfill, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    engine = create_engine(url)
    deadline = time.time() + 60
    stored = 0
    while time.time() < deadline and stored < 300:
        time.sleep(0.2)
        try:
            with engine.connect() as conn:
                stored = conn.execute(select(func.count()).select_from(leads)).scalar_one()
        except Exception:
            stored = 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < stored < len(made), "the backfill was not stopped in the middle"
    fake.faults.latency = 0.0
    fake.reset_calls()
    done = subprocess.run(backfill, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] < len(made)  # it continued; it did not start over
    assert summary["api_calls"] == fake.total_calls()
    with engine.connect() as conn:
        ids = list(conn.execute(select(leads.c.source_id)).scalars())
        parked = [
            r["id"]
            for r in conn.execute(
                select(quarantine.c.raw).where(quarantine.c.kind == "record")
            ).scalars()
        ]
    assert len(ids) == len(set(ids)) and not set(ids) & set(parked)
    assert set(ids) | set(parked) == made  # each lead stored once, or quarantined
    again = json.loads(subprocess.run(backfill, capture_output=True, text=True).stdout)
    assert again["rows"] == 0  # every form is done
    engine.dispose()


def scrape(http: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample /metrics serves, by name and labels, parsed as Prometheus does."""
    from prometheus_client.parser import text_string_to_metric_families

    response = http.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_count_what_a_daemon_run_did(fake: FakeGraph, store: Store, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from connector.config import load_config
    from connector.runtime.daemon import Daemon
    from connector.runtime.server import build_app

    busy, calm = fake.add_page("Busy"), fake.add_page("Calm")
    now = time.time()
    for page in (busy, calm):
        form = fake.add_form(page.id, name="F", questions=QUESTIONS)
        fake.generate_leads(form, 60, start=now - DAY, end=now - 60)
    path = tmp_path / "leadsync.yaml"
    section = fb_config(fake, busy, calm).model_dump(mode="json")
    section["app_secret"] = fake.app_secret
    section["pages"] = [{"id": p.id, "access_token": p.token} for p in (busy, calm)]
    path.write_text(yaml.safe_dump({"facebook": section}))
    daemon = Daemon(load_config(path), store, {"facebook": FacebookPlugin()}, config_path=path)
    http = TestClient(build_app(daemon, daemon.plugins))
    before = scrape(http)
    fake.reset_calls()
    # The busy Page is throttled from its first lead read on: the poll pauses it for
    # Meta's 3 minutes and reads the calm one.
    daemon.plugins["facebook"].source(daemon, daemon.config.facebook).discover()
    fake.throttle(busy.id, 600, code=80005, regain_minutes=3)
    assert daemon.run_once() == 0
    after = scrape(http)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    stored = count(store, leads)
    with store.engine.connect() as conn:
        filed = conn.execute(
            select(func.count()).select_from(quarantine).where(quarantine.c.kind == "record")
        ).scalar_one()
    assert stored > 0
    assert grew("leadsync_leads_ingested_total", source="facebook") == stored
    assert grew("leadsync_quarantined_total", source="facebook") == filed
    assert grew("leadsync_api_calls_total", adapter="facebook") == fake.total_calls()
    assert grew("leadsync_api_errors_total", adapter="facebook", code="80005") >= 1
    assert grew("leadsync_throttled_seconds_total", adapter="facebook") == 180
    assert grew("leadsync_job_duration_seconds_count", job="facebook.poll") == 1
    assert (
        after[("leadsync_job_last_success_timestamp_seconds", (("job", "facebook.poll"),))] >= now
    )


def test_metas_test_leads_are_ingested_and_marked(fake: FakeGraph, store: Store) -> None:
    import hashlib
    import hmac

    page = fake.add_page("Shop")
    forms = [fake.add_form(page.id, name=f"Form {i}", questions=QUESTIONS) for i in range(2)]
    proof = hmac.new(fake.app_secret.encode(), page.token.encode(), hashlib.sha256).hexdigest()
    made = []
    for form in forms:  # Meta's testing tool: dummy answers, test@fb.com as the email
        resp = requests.post(
            f"{fake.base_url}/v26.0/{form}/test_leads",
            data={"access_token": page.token, "appsecret_proof": proof},
            timeout=5,
        )
        made.append(resp.json()["id"])
    source = FacebookSource(fb_config(fake, page), store.catalogue, report=reporter(store))
    stats = Pipeline(store, workers=0).run(source)
    assert (stats.rows, stats.created, stats.quarantined, stats.field_issues) == (2, 2, 0, 0)
    with store.engine.connect() as conn:
        rows = conn.execute(select(contacts.c.email, contacts.c.external_id, contacts.c.custom))
        stored = sorted((email, ext, custom) for email, ext, custom in rows)
    # Two test leads with the same dummy address are two contacts, told apart by lead id.
    assert [ext for _, ext, _ in stored] == sorted(made)
    assert all(email is None for email, _, _ in stored)
    assert all(c["is_test"] is True and c["emails"] == ["test@fb.com"] for _, _, c in stored)
    assert all("<test lead" not in json.dumps(c) for _, _, c in stored)


def test_backfill_dry_run_on_a_fresh_sqlite_store_writes_nothing(
    fake: FakeGraph, tmp_path: Path
) -> None:
    # It crashed with "database is locked": health was written beside the dry run's
    # open transaction.
    page = fake.add_page("Fresh")
    form = fake.add_form(page.id, name="F", questions=QUESTIONS)
    now = time.time()
    fake.generate_leads(form, 30, start=now - 2 * DAY, end=now - 3600, bad_rate=0)
    cfg = tmp_path / "leadsync.yaml"
    section = {
        "app_id": fake.app_id,
        "app_secret": fake.app_secret,
        "graph_url": fake.base_url,
        "pages": [{"id": page.id, "access_token": page.token}],
    }
    cfg.write_text(yaml.safe_dump({"facebook": section}))
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    since = datetime.fromtimestamp(now - 5 * DAY, UTC).date().isoformat()
    cmd = [sys.executable, "-m", "connector", "backfill", "facebook", "--since", since]
    done = subprocess.run(
        [*cmd, "--dry-run", "--json", "-c", str(cfg), "--store", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] == 30 and summary["created"] > 0 and summary["dry_run"] is True
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(leads)).scalar_one() == 0
    engine.dispose()
