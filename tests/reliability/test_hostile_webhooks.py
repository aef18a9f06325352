"""Poison webhook deliveries: each delivery is handled on its own. A malformed one is
marked done with its error, a failing one counts attempts and becomes a dead letter
(listed by `status` and /metrics), and the genuine ones beside them are processed in
the same drain. Plus: forged requests are counted, their warning rate-limited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from starlette.testclient import TestClient

from adapters.facebook import FacebookPlugin
from adapters.facebook.fake import FakeGraph
from adapters.facebook.graph import Action, GraphError
from adapters.facebook.source import FacebookSource
from adapters.facebook.webhook import drain, fetch_pool, signature
from connector.config import load_config
from connector.pipeline import Pipeline
from connector.runtime import inbox, status
from connector.runtime.daemon import Daemon
from connector.runtime.server import RateLimitedWarning, build_app
from connector.store import Store
from connector.store.tables import leads, webhook_deliveries
from tests.e2e.test_facebook import QUESTIONS, count, fake, fb_config  # noqa: F401

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def daemon(fake: FakeGraph, store: Store, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    page = fake.add_page("Shop")
    fake.add_form(page.id, name="F", questions=QUESTIONS)
    section = fb_config(fake, page).model_dump(mode="json")
    section["app_secret"] = fake.app_secret
    section["pages"] = [{"id": page.id, "access_token": page.token}]
    path = tmp_path / "leadsync.yaml"
    path.write_text(
        yaml.safe_dump({"facebook": section, "server": {"webhook_attempts": 3, "max_body": 4096}})
    )
    yield Daemon(load_config(path), store, {"facebook": FacebookPlugin()}, config_path=path)


def genuine(fake: FakeGraph, daemon: Daemon, n: int) -> tuple[str, bytes]:  # noqa: F811
    """A real lead on the fake Graph and the webhook body that announces it."""
    page_id = daemon.config.facebook.pages[0].id  # type: ignore[attr-defined]
    form = next(
        f for f, o in fake.objects.items() if o.get("kind") == "form" and o["page_id"] == page_id
    )
    lead = fake.add_lead(
        form, {"email": f"real{n}@example.com", "full_name": f"Real {n}"}, notify=False
    )
    return lead, change(page_id, lead)


def change(page_id: str, leadgen_id: Any, **value: Any) -> bytes:
    entry = {"id": page_id, "changes": [{"field": "leadgen", "value": {
        "leadgen_id": leadgen_id, "page_id": page_id, **value}}]}  # fmt: skip
    return json.dumps({"object": "page", "entry": [entry]}).encode()


def run_drain(daemon: Daemon) -> Any:
    plugin = daemon.plugins["facebook"]
    source = plugin.source(daemon, daemon.config.facebook)  # type: ignore[attr-defined]
    with fetch_pool() as pool:
        return drain(daemon, source, lambda: Pipeline(daemon.store, workers=0), pool)


def rows(store: Store) -> dict[int, dict[str, Any]]:
    with store.engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(select(webhook_deliveries))}


def poisons(page_id: str) -> dict[str, bytes]:
    return {
        "entry is a number": b'{"object":"page","entry":5}',
        "changes is a number": b'{"object":"page","entry":[{"changes":5}]}',
        "an entry is a number": b'{"object":"page","entry":[5]}',
        "a value is a list": b'{"object":"page","entry":[{"changes":[{"field":"leadgen",'
        b'"value":[1]}]}]}',
        "100k-deep JSON": DEEP.encode(),
        "not JSON": b"\xff\xfe not json",
        "a path for an id": change(page_id, "../me"),
        "an object for an id": change(page_id, {"id": 1}),
    }


def test_malformed_deliveries_are_done_with_their_error_and_the_genuine_ones_go_on(
    fake: FakeGraph,  # noqa: F811
    daemon: Daemon,
) -> None:
    store = daemon.store
    page_id = daemon.config.facebook.pages[0].id  # type: ignore[attr-defined]
    bad = {name: inbox.put(store, "facebook", body) for name, body in poisons(page_id).items()}
    lead_id, body = genuine(fake, daemon, 1)
    good = inbox.put(store, "facebook", body)

    stats = run_drain(daemon)

    assert stats.created == 1
    with store.engine.connect() as conn:
        assert list(conn.execute(select(leads.c.source_id)).scalars()) == [lead_id]
    found = rows(store)
    assert found[good]["processed_at"] is not None and found[good]["error"] is None
    for name, delivery in bad.items():
        assert found[delivery]["processed_at"] is not None, name
        assert found[delivery]["error"], name
    assert inbox.pending(store) == 0


def test_a_lead_the_graph_refuses_is_a_dead_letter_in_status_and_metrics(
    fake: FakeGraph,  # noqa: F811
    daemon: Daemon,
) -> None:
    store = daemon.store
    page_id = daemon.config.facebook.pages[0].id  # type: ignore[attr-defined]
    refused = inbox.put(store, "facebook", change(page_id, page_id))  # a Page is not a lead
    _, body = genuine(fake, daemon, 2)
    good = inbox.put(store, "facebook", body)

    run_drain(daemon)

    found = rows(store)
    assert found[good]["processed_at"] is not None
    assert found[refused]["dead_at"] is not None and "refused" in found[refused]["error"]
    assert inbox.pending(store) == 0
    [listed] = status.collect(store, found[good]["processed_at"])["webhooks_dead"]
    assert listed["id"] == refused
    metrics = TestClient(build_app(daemon, daemon.plugins)).get("/metrics").text
    assert 'leadsync_webhook_deliveries{source="facebook",state="dead"} 1.0' in metrics
    assert 'leadsync_webhook_deliveries{source="facebook",state="pending"} 0.0' in metrics


def test_a_failing_delivery_counts_attempts_then_dies_and_never_blocks_the_others(
    fake: FakeGraph,  # noqa: F811
    daemon: Daemon,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = daemon.store
    page_id = daemon.config.facebook.pages[0].id  # type: ignore[attr-defined]
    flaky, flaky_body = genuine(fake, daemon, 3)
    fetch = FacebookSource.fetch

    def failing(self: FacebookSource, lead_id: str, page: str | None) -> dict[str, Any]:
        if lead_id == flaky:
            raise GraphError(Action.RETRY, "service unavailable", code=2)
        return fetch(self, lead_id, page)

    monkeypatch.setattr(FacebookSource, "fetch", failing)
    stuck = inbox.put(store, "facebook", flaky_body)
    delivered = []
    for n in range(3):  # webhook_attempts: 3
        _, body = genuine(fake, daemon, 10 + n)
        delivered.append(inbox.put(store, "facebook", body))
        run_drain(daemon)
        found = rows(store)
        assert found[delivered[-1]]["processed_at"] is not None  # processed in the same drain
        assert found[stuck]["attempts"] == n + 1
        # its backoff holds it back; the test does not wait for it
        assert found[stuck]["claimed_until"] is not None or found[stuck]["dead_at"] is not None
        with store.engine.begin() as conn:
            conn.execute(update(webhook_deliveries).values(claimed_until=None))
    found = rows(store)
    assert found[stuck]["dead_at"] is not None and found[stuck]["processed_at"] is None
    assert "service unavailable" in found[stuck]["error"]
    assert inbox.pending(store) == 0
    assert count(store, leads) == 3
    assert page_id


def test_a_record_the_store_refuses_fails_its_own_delivery_only(
    fake: FakeGraph,  # noqa: F811
    daemon: Daemon,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = daemon.store
    bodies = [genuine(fake, daemon, 20 + n) for n in range(4)]
    ids = [inbox.put(store, "facebook", body) for _, body in bodies]
    ingest = Pipeline.ingest

    def refusing(self: Pipeline, source: str, records: Any, *args: Any, **kw: Any) -> Any:
        records = list(records)
        if any(r.source_id == bodies[1][0] for r in records):
            raise RuntimeError("the store refused a record")
        return ingest(self, source, records, *args, **kw)

    monkeypatch.setattr(Pipeline, "ingest", refusing)
    run_drain(daemon)
    found = rows(store)
    assert [found[i]["processed_at"] is not None for i in ids] == [True, False, True, True]
    assert "refused a record" in found[ids[1]]["error"]
    assert count(store, leads) == 3


def test_forged_requests_are_counted_and_their_warning_rate_limited() -> None:
    now = [1000.0]
    warn = RateLimitedWarning("test.forged", every=60.0, clock=lambda: now[0])
    logged = [warn("/webhooks/facebook") for _ in range(100)]
    assert logged.count(True) == 1
    now[0] += 61
    assert warn("/webhooks/facebook") is True
    assert warn("/webhooks/other") is True  # per route


# -- fuzzing: signed random bodies through the handler and the drain -----------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_LEADGENISH = st.fixed_dictionaries(
    {
        "object": st.sampled_from(["page", "user", 5]),
        "entry": st.one_of(
            _JSON,
            st.lists(
                st.fixed_dictionaries(
                    {
                        "changes": st.one_of(
                            _JSON,
                            st.lists(
                                st.fixed_dictionaries(
                                    {
                                        "field": st.sampled_from(["leadgen", "feed", 1]),
                                        "value": st.one_of(
                                            _JSON,
                                            st.fixed_dictionaries(
                                                {"leadgen_id": _JSON, "page_id": _JSON}
                                            ),
                                        ),
                                    }
                                ),
                                max_size=2,
                            ),
                        )
                    }
                ),
                max_size=2,
            ),
        ),
    }
)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=st.one_of(_LEADGENISH.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)))
def test_signed_random_bodies_never_break_the_handler_or_the_drain(
    fake: FakeGraph,  # noqa: F811
    daemon: Daemon,
    body: bytes,
) -> None:
    http = TestClient(build_app(daemon, daemon.plugins), raise_server_exceptions=True)
    path = daemon.config.facebook.webhook_path  # type: ignore[attr-defined]
    reply = http.post(
        path, content=body, headers={"X-Hub-Signature-256": signature(fake.app_secret, body)}
    )
    assert reply.status_code == 200
    run_drain(daemon)  # never raises
    assert inbox.pending(daemon.store) == 0  # nothing left leased or stuck


@pytest.mark.slow
def test_a_running_daemon_drains_genuine_deliveries_beside_poison_ones(
    fake: FakeGraph,  # noqa: F811
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    import requests
    from sqlalchemy import create_engine, func

    from tests.runtime.test_daemon_process import free_port, wait_for

    page = fake.add_page("Shop")
    form = fake.add_form(page.id, name="F", questions=QUESTIONS)
    section = {
        "app_id": fake.app_id,
        "app_secret": fake.app_secret,
        "graph_url": fake.base_url,
        "pages": [{"id": page.id, "access_token": page.token}],
        "poll_every": 3600,
    }
    cfg = tmp_path / "leadsync.yaml"
    cfg.write_text(yaml.safe_dump({"facebook": section}))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    port = free_port()
    log = tmp_path / "daemon.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "connector",
                "-c",
                str(cfg),
                "--store",
                url,
                "run",
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: "daemon.started" in log.read_text(), "the daemon")
        made = []
        for n, poison in enumerate(poisons(page.id).values()):
            lead = fake.add_lead(form, {"email": f"d{n}@example.com"}, notify=False)
            made.append(lead)
            for body in (poison, change(page.id, page.id), change(page.id, lead)):
                sig = signature(fake.app_secret, body)
                reply = requests.post(
                    base + "/webhooks/facebook", data=body, headers={"X-Hub-Signature-256": sig}
                )
                assert reply.status_code in (200, 413), reply.status_code  # 413: 100k-deep
        engine = create_engine(url)

        def stored() -> int:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(leads)).scalar_one())

        wait_for(lambda: stored() == len(made), "every genuine lead stored", limit=60)
        engine.dispose()
        assert proc.poll() is None
        assert requests.get(base + "/healthz", timeout=10).status_code == 200
        assert "Traceback" not in log.read_text()
        proc.terminate()
        proc.wait(timeout=60)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
