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
        outbox.enqueue(conn, "crm", "status", "c1:won", None, {"status": "won"})
    http = client(store)
    assert http.get("/healthz").status_code == 200
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert 'leadsync_outbox_depth{destination="crm"} 1.0' in metrics.text
    assert "leadsync_outbox_oldest_age_seconds" in metrics.text
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


FACEBOOK_YAML = """
facebook:
  app_secret: {secret}
  verify_token: hello-token
  system_user_token: a-token
  graph_url: http://127.0.0.1:9
  webhook_path: {path}
  pages: [{{id: "123"}}]
"""


def test_a_reload_remounts_routes_with_the_new_secret_and_path(
    store: Store, tmp_path: Path
) -> None:
    from adapters.facebook import plugin as facebook
    from adapters.facebook.webhook import signature
    from connector.config import load_config

    path = tmp_path / "leadsync.yaml"
    path.write_text(FACEBOOK_YAML.format(secret="old-secret", path="/webhooks/facebook"))
    d = Daemon(load_config(path), store, {"facebook": facebook}, config_path=path)
    d.app = build_app(d, d.plugins)
    http = TestClient(d.app)
    body = b'{"object": "page", "entry": []}'

    def post(route: str, secret: str) -> int:
        headers = {"X-Hub-Signature-256": signature(secret, body)}
        return http.post(route, content=body, headers=headers).status_code

    assert post("/webhooks/facebook", "old-secret") == 200
    path.write_text(FACEBOOK_YAML.format(secret="new-secret", path="/hooks/fb"))
    assert d.reload() is True
    assert post("/hooks/fb", "old-secret") == 403  # the rotated secret is the one checked
    assert post("/hooks/fb", "new-secret") == 200
    assert post("/webhooks/facebook", "new-secret") == 404  # the old path is gone
    assert http.get("/healthz").status_code == 200  # the core endpoints stay
    path.write_text("facebook: {pages: []}\n")  # invalid: the routes stay as they were
    assert d.reload() is False
    assert post("/hooks/fb", "new-secret") == 200


def test_uvicorn_and_apscheduler_records_reach_the_structured_log() -> None:
    import logging

    from structlog.testing import capture_logs

    from connector.runtime.daemon import _bridge_library_logs

    _bridge_library_logs()
    try:
        raise ValueError("DETAIL:  Key (key)=(email:ana@example.com) already exists.\nboom")
    except ValueError:
        with capture_logs() as logged:
            logging.getLogger("uvicorn.error").error("Exception in ASGI application", exc_info=True)
            logging.getLogger("apscheduler.scheduler").warning("Run time of job x was missed")
            logging.getLogger("uvicorn.error").info("Started server process")  # below WARNING
    assert [(e["event"], e["log_level"]) for e in logged] == [
        ("http.notice", "warning"),
        ("scheduler.notice", "warning"),
    ]
    assert logged[0]["error"] == "ValueError: boom"  # by class, without the row's values
    assert "ana@example.com" not in repr(logged)
