"""`leadsync status` data: health, last runs, cursors with lag, outbox, quarantine, inbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from connector.config import LeadsyncConfig
from connector.ports import Job
from connector.runtime import inbox, status
from connector.runtime.daemon import Daemon
from connector.store import Store
from connector.store.tables import cursors, quarantine
from connector.sync import outbox
from tests.runtime.test_scheduler import Jobs


def test_collect_shows_what_each_part_last_did(store: Store) -> None:
    now = datetime.now(UTC)
    d = Daemon(LeadsyncConfig(), store, {"i": Jobs(Job("fb.poll", lambda rt: None, every=60))})  # type: ignore[dict-item]
    d.run_once()
    d.run_once()
    d.report("facebook", "failing", "renew the page token", detail={"code": 190})
    d.report("sheets", "paused", "throttled", until=now + timedelta(minutes=5))
    with store.engine.begin() as conn:
        conn.execute(
            insert(cursors).values(
                source="facebook",
                stream="form-1",
                value={"t": 5},
                updated_at=now - timedelta(minutes=10),
            )
        )
        conn.execute(
            insert(quarantine).values(
                source="facebook",
                ref="r1",
                field="phone",
                reason="not a number",
                raw={},
                context={},
                fingerprint="f" * 64,
                attempts=1,
                created_at=now,
            )
        )
        conn.execute(  # a field issue: counted apart from whole records
            insert(quarantine).values(
                source="facebook",
                ref="r2",
                field="email",
                reason="invalid address",
                raw={"field": "email", "value": "x"},
                context={},
                fingerprint="e" * 64,
                attempts=1,
                created_at=now,
                kind="field",
            )
        )
        outbox.enqueue(conn, "crm", "status", "k1", None, {}, now=now - timedelta(seconds=90))
    inbox.put(store, "facebook", b"{}")

    data = status.collect(store, now)
    assert [(s["source"], s["state"], s["reason"]) for s in data["sources"]] == [
        ("facebook", "failing", "renew the page token"),
        ("sheets", "paused", "throttled"),
    ]
    assert data["sources"][1]["paused_until"] is not None
    [job] = data["jobs"]
    assert job["job_id"] == "fb.poll" and job["ok"] is True and job["replica"] == d.replica
    [cursor] = data["cursors"]
    assert cursor["value"] == {"t": 5} and 590 <= cursor["lag_seconds"] <= 610
    assert data["outbox"]["crm"]["pending"] == 1
    assert 80 <= data["outbox"]["crm"]["oldest_age"] <= 100
    assert data["quarantine_open"] == 1 and data["field_issues_open"] == 1
    assert data["webhooks_pending"] == 1
