"""`leadsync contacts set-status` through the engine and `contacts why`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import IMPORT_SAMPLE, lines, run


def test_why_explains_the_status_and_a_refusal(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    config = tmp_path / "leadsync.yaml"
    config.write_text("sync:\n  authoritative:\n    crm: [Won]\n")
    run(*IMPORT_SAMPLE, "--json", store=store)
    first = lines(run("contacts", "list", "--json", store=store).stdout)[0]["id"]
    cfg = ("--config", str(config))
    run(*cfg, "contacts", "set-status", str(first), "Negotiating", "--actor", "kevin", store=store)
    refused = run(*cfg, "contacts", "set-status", str(first), "Won", store=store, ok=False)
    assert refused.returncode == 1 and "crm decides Won" in refused.stdout
    why = json.loads(run(*cfg, "contacts", "why", str(first), "--json", store=store).stdout)
    assert why["status"] == "Negotiating"
    assert (why["set_by"]["origin"], why["set_by"]["actor"], why["set_by"]["rule"]) == (
        "person", "kevin", "person",
    )  # fmt: skip
    [no] = why["refused_since"]
    assert (no["to"], no["rule"], no["accepted"]) == ("Won", "authoritative:crm", False)
    text = " ".join(run(*cfg, "contacts", "why", str(first), store=store).stdout.split())
    assert "a person in leadsync (kevin) set Negotiating" in text
    assert "refused Won" in text and "crm is authoritative for it" in text
