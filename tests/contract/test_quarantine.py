"""Quarantine that closes, on SQLite and PostgreSQL: entries resolve when their record
is ingested later, the admin dismisses, and the list is paged and filtered."""

from __future__ import annotations

from typing import Any

from connector.model import Lead, Problem
from connector.pipeline import Pipeline
from connector.store import Store
from connector.store import quarantine as q


def lead(ref: str, source: str = "test", raw: dict[str, Any] | None = None, **fields: Any) -> Lead:
    source_id = fields.pop("source_id", None)
    return Lead(
        source=source,
        ref=ref,
        fields=fields,
        source_id=source_id,
        raw=raw or {"ref": ref, **fields},
    )


def ingest(store: Store, *records: Lead, source: str = "test", dry_run: bool = False) -> Any:
    return Pipeline(store, default_region="MY", workers=0, dry_run=dry_run).ingest(source, records)


def open_entries(store: Store, **filters: Any) -> list[dict[str, Any]]:
    return q.entries(store, limit=None, **filters)[0]


def test_an_entry_closes_when_the_same_record_comes_in_fine_by_source_id(store: Store) -> None:
    ingest(store, lead("row 2", email="ana@", source_id="crm-7"))
    assert [e["ref"] for e in open_entries(store)] == ["row 2"]
    fixed = ingest(store, lead("row 2", email="ana@example.com", source_id="crm-7"))
    assert fixed.created == 1 and fixed.resolved == 1
    assert open_entries(store) == []
    [closed] = open_entries(store, include_resolved=True)
    assert closed["resolution"] == "reingested" and closed["resolved_at"] is not None


def test_an_entry_closes_by_fingerprint_when_the_mapping_was_fixed(store: Store) -> None:
    raw = {"E-mail": "ben@example.com", "Status": "Baharu"}
    bad = lead("row 3", raw=raw, email="ben@example.com")
    bad.problems.append(Problem("Status", "no status for 'Baharu': add it to the mapping's values"))
    ingest(store, bad)
    assert len(open_entries(store)) == 1
    # The same row, mapped again with the word added: same raw content, no problem now.
    again = ingest(store, lead("row 3", raw=raw, email="ben@example.com"))
    assert again.resolved == 1 and open_entries(store) == []


def test_a_different_record_or_a_dry_run_closes_nothing(store: Store) -> None:
    ingest(store, lead("row 2", email="ana@", source_id="crm-7"))
    assert ingest(store, lead("row 9", email="zoe@example.com", source_id="crm-9")).resolved == 0
    ingest(store, lead("row 2", email="ana@example.com", source_id="crm-7"), dry_run=True)
    assert len(open_entries(store)) == 1
    # The same id from another source is another record.
    ingest(store, lead("row 2", email="ana@example.com", source_id="crm-7"), source="other")
    assert len(open_entries(store)) == 1


def test_dismiss_by_id_source_and_reason(store: Store) -> None:
    ingest(store, lead("row 2", email="a@"), lead("row 3", phone="12"), lead("row 4", city="X"))
    ingest(store, lead("row 2", email="b@", source="web"), source="web")
    ids = {e["ref"] + "/" + e["source"]: e["id"] for e in open_entries(store)}
    assert q.dismiss(store, [ids["row 2/test"]]) == 1
    assert q.dismiss(store, reason="NOTHING IDENTIFIES") == 1  # row 4, case-insensitive
    assert q.dismiss(store, source="web") == 1
    assert [e["ref"] for e in open_entries(store)] == ["row 3"]
    assert q.dismiss(store, [ids["row 2/test"]]) == 0  # already closed
    dismissed = [e for e in open_entries(store, include_resolved=True) if e["resolution"]]
    assert {e["resolution"] for e in dismissed} == {"dismissed"} and len(dismissed) == 3


def test_the_list_is_paged_and_filtered(store: Store) -> None:
    ingest(store, *(lead(f"row {i}", email=f"bad{i}@") for i in range(2, 9)))
    ingest(store, lead("row 2", email="x@", source="web"), source="web")
    page, total = q.entries(store, limit=3, offset=3, source="test")
    assert total == 7 and [e["ref"] for e in page] == ["row 5", "row 6", "row 7"]
    assert q.entries(store, limit=3, source="web")[1] == 1


def test_hints_tell_data_from_mapping_errors() -> None:
    assert q.hint("Status: no status for 'X': add it to the mapping's values").startswith(
        "fix the mapping"
    )
    assert q.hint("email: not a valid address").startswith("fix the data")
