"""Closing re-ingested quarantine entries closes exactly what the plain statement
closes, on SQLite and PostgreSQL, whichever way the entries are found (reading the
source's few open entries, or index probes when there are many): the open record
entries of the batch's source whose source id or raw content came in again."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, insert, or_, select, update

from connector.identity import prepare
from connector.model import Lead, Resolved
from connector.store import Store
from connector.store import quarantine as q
from connector.store.ingest import fingerprint
from connector.store.tables import quarantine

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _raw(i: int) -> dict[str, Any]:
    return {"email": f"person{i}@example.com", "row": i}


def _entries(rng: random.Random) -> list[dict[str, Any]]:
    """Entries of two sources, open and closed, records and fields, whose source ids
    and raw contents overlap the batch's in every combination."""
    rows = []
    for n in range(120):
        source = rng.choice(["test", "test", "other"])
        i = rng.randrange(60)
        raw = _raw(rng.randrange(60))
        rows.append(
            {
                "source": source,
                "ref": f"row {n}",
                "field": "email",
                "reason": "bad email",
                "raw": raw,
                "context": {},
                # Unique per source, as the table wants: some match a record's raw.
                "fingerprint": fingerprint(source, raw) if n % 3 else f"other-{n}",
                "attempts": 1,
                "created_at": NOW,
                "resolved_at": NOW if rng.random() < 0.25 else None,
                "kind": "field" if rng.random() < 0.2 else "record",
                "source_id": str(i) if rng.random() < 0.8 else None,
            }
        )
    seen: set[tuple[str, str]] = set()
    unique = []
    for row in rows:
        if (row["source"], row["fingerprint"]) not in seen:
            seen.add((row["source"], row["fingerprint"]))
            unique.append(row)
    return unique


def _batch(rng: random.Random) -> list[Resolved]:
    picked = rng.sample(range(60), 25)
    return [
        prepare(
            Lead(
                source="test",
                ref=f"record {i}",
                fields={"email": f"person{i}@example.com"},
                source_id=str(i if rng.random() < 0.5 else 1000 + i),
                raw=_raw(i if rng.random() < 0.5 else 2000 + i),
            )
        )
        for i in picked
    ]


def _plain(conn: Connection, source: str, records: list[Resolved]) -> set[int]:
    """What the plain statement closes: every condition in one WHERE."""
    ids = [r.source_id for r in records]
    prints = [fingerprint(r.source, r.raw) for r in records]
    rows = conn.execute(
        update(quarantine)
        .where(
            quarantine.c.source == source,
            quarantine.c.kind == "record",
            quarantine.c.resolved_at.is_(None),
            or_(quarantine.c.source_id.in_(ids), quarantine.c.fingerprint.in_(prints)),
        )
        .values(resolved_at=NOW, resolution="reingested")
        .returning(quarantine.c.id)
    )
    return {r[0] for r in rows}


def _closed_by_probes(conn: Connection, source: str, records: list[Resolved]) -> set[int]:
    before = set(conn.execute(select(quarantine.c.id).where(quarantine.c.resolved_at.is_(None))))
    count = q.resolve_reingested(conn, source, records, NOW)
    after = set(conn.execute(select(quarantine.c.id).where(quarantine.c.resolved_at.is_(None))))
    closed = {r[0] for r in before - after}
    assert count == len(closed)
    return closed


# Open entries read per record of the batch before probing instead: 0 always probes,
# 1000 always reads (the data has at most 120 entries, the batch 25 records).
@pytest.mark.parametrize("read_per_record", [0, 1000])
def test_both_ways_close_what_the_plain_statement_closes(
    store: Store, read_per_record: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(q, "_READ_PER_RECORD", read_per_record)
    compared = 0
    for seed in range(8):
        rng = random.Random(seed)
        entries, records = _entries(rng), _batch(rng)
        with store.engine.connect() as conn:
            conn.execute(quarantine.delete())
            conn.execute(insert(quarantine), entries)
            conn.commit()
            expected = _plain(conn, "test", records)
            conn.rollback()
            assert _closed_by_probes(conn, "test", records) == expected
            conn.rollback()
        compared += len(expected)
    assert compared > 20  # the data did exercise matches, not only misses


def test_a_source_without_open_record_entries_closes_nothing(store: Store) -> None:
    rng = random.Random(1)
    entries = [e for e in _entries(rng) if e["source"] == "other" or e["kind"] == "field"]
    with store.engine.begin() as conn:
        conn.execute(insert(quarantine), entries)
        assert q.resolve_reingested(conn, "test", _batch(rng), NOW) == 0
