"""`leadsync outbox list|retry|dismiss` and `leadsync status` on both stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from connector.cli import app
from connector.config import OutboxConfig
from connector.ports import Delivered, DeliveryResult, Failed, OutboxRow, Retry
from connector.statuses import Catalogue
from connector.store import Store, open_store
from connector.sync import outbox
from tests.runtime.test_outbox import Recorder, people, rows


def cli(url: str, *args: str, code: int = 0) -> str:
    # The CLI points structlog at the runner's stderr, closed once it returns: give the
    # tests that follow the logging they had.
    saved = structlog.get_config()
    try:
        result = CliRunner().invoke(app, ["--store", url, *args], catch_exceptions=False)
    finally:
        structlog.configure(**saved)
    assert result.exit_code == code, result.output
    return result.output


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def filled(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """crm: k0 delivered, k1 dead (Failed), k2 backing off, k3 waiting; ads: a0 waiting."""
    monkeypatch.chdir(tmp_path)  # no ./leadsync.yaml
    store = open_store(store_url, Catalogue.default(), upgrade=True)
    [c] = people(store, 1)
    with store.engine.begin() as conn:
        for i in range(3):
            outbox.enqueue(conn, "crm", "status", f"k{i}", c, {"email": f"p{i}@example.com"})
        outbox.enqueue(conn, "ads", "audience", "a0", None, {})

    def answer(row: OutboxRow) -> DeliveryResult:
        return {"k0": Delivered(), "k1": Failed("422 no such property"), "k2": Retry("503")}[
            row.key
        ]

    target = Recorder(answer=answer)
    for _ in range(3):  # one claim per contact at a time: three rounds
        outbox.deliver_batch(store, target, OutboxConfig())
    with store.engine.begin() as conn:
        outbox.enqueue(conn, "crm", "status", "k3", None, {})
    return store


def test_list_by_state_destination_and_limit(filled: Store) -> None:
    url = filled.url
    every = jsonl(cli(url, "outbox", "list", "--json"))
    assert {r["key"]: r["state"] for r in every} == {
        "k0": "delivered",
        "k1": "failed",
        "k2": "pending",
        "k3": "pending",
        "a0": "pending",
    }
    assert every[0]["payload"] is not None  # --json carries payloads
    [dead] = jsonl(cli(url, "outbox", "list", "--state", "failed", "--json"))
    assert dead["key"] == "k1" and dead["last_error"] == "422 no such property"
    pending = jsonl(cli(url, "outbox", "list", "--state", "pending", "-d", "crm", "--json"))
    assert [r["key"] for r in pending] == ["k2", "k3"]  # oldest first
    assert len(jsonl(cli(url, "outbox", "list", "--json", "--limit", "2"))) == 2
    table = cli(url, "outbox", "list", "--state", "failed")
    assert "422" in table and "failed" in table and "p1@example.com" not in table
    with pytest.raises(ValueError, match="one of pending, failed"):
        cli(url, "outbox", "list", "--state", "lost")


def test_retry_ids_and_destination(filled: Store) -> None:
    url = filled.url
    ids = {str(r["key"]): int(str(r["id"])) for r in rows(filled)}
    # A delivered row is not sent again; the command says why and fails.
    skipped = cli(url, "outbox", "retry", str(ids["k0"]), code=1)
    assert "delivered already" in skipped
    done = json.loads(cli(url, "outbox", "retry", str(ids["k1"]), "--json"))
    assert done["retried"] == [ids["k1"]]
    assert "later row" not in json.dumps(done["notes"])  # k2 is not delivered yet
    k1 = next(r for r in rows(filled) if r["key"] == "k1")
    assert k1["dead_at"] is None and k1["attempts"] == 0 and k1["last_error"]
    # --destination: the backing-off row is due now (the dead one is pending again).
    k2 = next(r for r in rows(filled) if r["key"] == "k2")
    assert isinstance(k2["available_at"], datetime)
    assert k2["available_at"] > datetime.now(UTC)
    assert "retried 1" in cli(url, "outbox", "retry", "--destination", "crm")
    k2 = next(r for r in rows(filled) if r["key"] == "k2")
    assert k2["available_at"] <= datetime.now(UTC) and k2["attempts"] == 1
    # Both pending again, in order: k1 first (lower id), then k2.
    target = Recorder()
    outbox.deliver(filled, [target])
    assert [r.key for r in target.seen if r.contact_id] == ["k1", "k2"]
    with pytest.raises(ValueError, match="one of the two"):
        cli(url, "outbox", "retry")


def test_retrying_a_dead_letter_whose_effect_was_enqueued_again(filled: Store) -> None:
    [k1] = [r for r in rows(filled) if r["key"] == "k1"]
    with filled.engine.begin() as conn:
        assert outbox.enqueue(conn, "crm", "status", "k1", None, {})
    out = cli(filled.url, "outbox", "retry", str(k1["id"]), code=1)
    assert "the same effect is pending as row" in out


def test_dismiss_dead_and_waiting_rows_not_leased_ones(filled: Store) -> None:
    url = filled.url
    ids = {str(r["key"]): int(str(r["id"])) for r in rows(filled)}
    assert json.loads(cli(url, "status", "--json"))["outbox"]["crm"]["failed"] == 1
    out = json.loads(cli(url, "outbox", "dismiss", str(ids["k1"]), str(ids["a0"]), "--json"))
    assert out["dismissed"] == [ids["k1"], ids["a0"]]
    status = json.loads(cli(url, "status", "--json"))["outbox"]
    assert status == {"crm": {"pending": 2, "oldest_age": pytest.approx(0, abs=60), "failed": 0}}
    dismissed = jsonl(cli(url, "outbox", "list", "--state", "dismissed", "--json"))
    assert {r["key"] for r in dismissed} == {"k1", "a0"}
    taken = outbox.claim(filled, "crm", now=datetime.now(UTC) + timedelta(hours=2))
    assert [r.key for r in taken.rows] == ["k2", "k3"]
    leased = cli(url, "outbox", "dismiss", str(ids["k2"]), str(ids["k0"]), code=1)
    assert "being delivered now" in leased and "delivered already" in leased
    assert "dismissed already" in cli(url, "outbox", "dismiss", str(ids["a0"]), code=1)
    # The human status table shows dead letters apart from pending rows.
    assert "failed" in cli(url, "status")
