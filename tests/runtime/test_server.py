"""The daemon's HTTP app through starlette's TestClient."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from connector.config import LeadsyncConfig
from connector.runtime.daemon import Daemon
from connector.runtime.server import build_app
from connector.store import Store
from connector.store.engine import make_engine
from connector.sync import outbox
from tests.runtime.fake_plugin import FakePlugin


def client(store: Store) -> TestClient:
    d = Daemon(LeadsyncConfig(), store, {"fake": FakePlugin()})  # type: ignore[dict-item]
    return TestClient(build_app(d, d.plugins))


def test_healthz_readyz_metrics_and_plugin_routes(store: Store) -> None:
    with store.engine.begin() as conn:
        outbox.enqueue(conn, "crm", "status", "c1:won", {"status": "won"})
    http = client(store)
    assert http.get("/healthz").status_code == 200
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert 'leadsync_outbox_depth{destination="crm"} 1.0' in metrics.text
    assert "leadsync_outbox_oldest_age_seconds" in metrics.text
    assert "leadsync_job_duration_seconds" in metrics.text
    assert http.get("/webhooks/fake").text == "hello"  # a plugin's route, mounted as given
    assert http.get("/nothing-here").status_code == 404


def test_readyz_503_when_migrations_are_not_current(tmp_path: Path) -> None:
    bare = Store(make_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    ready = client(bare).get("/readyz")
    assert ready.status_code == 503
    assert "leadsync db upgrade" in ready.json()["reason"]
    assert client(bare).get("/healthz").status_code == 200  # alive all the same


def test_readyz_503_when_the_store_is_unreachable() -> None:
    down = Store(make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"))
    http = client(down)
    ready = http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["reason"].startswith("store unreachable")
    assert http.get("/metrics").status_code == 200  # still served without the outbox gauges
