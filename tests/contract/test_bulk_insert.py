"""`bulk.insert_values` (sqlite3 executemany, PostgreSQL COPY) writes exactly what Core's
INSERT writes, on both stores. On PostgreSQL datetimes go to COPY as the text
psycopg's own dumper makes of them, once per distinct object: aware datetimes in any
offset, with and without microseconds, at the ends of the range, shared by many rows
(the batch's `now`) or each its own, and NULLs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, select

from connector.store import Store
from connector.store.bulk import insert_values
from connector.store.tables import contacts, status_history

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
COLUMNS = ("id", "status", "email", "status_changed_at", "custom", "created_at", "updated_at")
HISTORY = ("contact_id", "from_status", "to_status", "origin", "actor", "at")
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
EDGES = [
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2000, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(9999, 12, 30, tzinfo=UTC),
    datetime(1, 1, 2, tzinfo=UTC),
]


def _when(rng: random.Random) -> datetime | None:
    pick = rng.random()
    if pick < 0.15:
        return None
    if pick < 0.5:
        return NOW  # one object on many rows, converted once
    if pick < 0.6:
        return rng.choice(EDGES)
    seconds = rng.randrange(-(10**9), 10**9)
    micro = 0 if rng.random() < 0.3 else rng.randrange(10**6)
    return (NOW + timedelta(seconds=seconds, microseconds=micro)).astimezone(rng.choice(ZONES))


def _contact_rows(rng: random.Random) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(1, 61):
        created = _when(rng) or NOW
        rows.append((i, 1, f"p{i}@example.com", _when(rng), {}, created, _when(rng) or NOW))
    return rows


def _history_rows(rng: random.Random) -> list[tuple[Any, ...]]:
    return [(rng.randrange(1, 61), None, 1, "source:t", None, _when(rng) or NOW) for _ in range(80)]


def _read(store: Store) -> tuple[list[Any], list[Any]]:
    with store.engine.connect() as conn:
        people = [tuple(r) for r in conn.execute(select(contacts).order_by(contacts.c.id))]
        history = [
            tuple(r)[1:] for r in conn.execute(select(status_history).order_by(status_history.c.id))
        ]
    return people, history


def _reset(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(status_history.delete())
        conn.execute(contacts.delete())


def test_insert_values_writes_what_core_writes(store: Store) -> None:
    for seed in range(5):
        rng = random.Random(seed)
        people, history = _contact_rows(rng), _history_rows(rng)
        _reset(store)
        with store.engine.begin() as conn:
            conn.execute(insert(contacts), [dict(zip(COLUMNS, r, strict=True)) for r in people])
            conn.execute(
                insert(status_history), [dict(zip(HISTORY, r, strict=True)) for r in history]
            )
        expected = _read(store)
        _reset(store)
        with store.engine.begin() as conn:
            insert_values(conn, contacts, COLUMNS, people)
            insert_values(conn, status_history, HISTORY, history)
        assert _read(store) == expected
        # Read back as the aware UTC instants that went in.
        got = {r[0]: r[contacts.c.keys().index("status_changed_at")] for r in expected[0]}
        assert all(got[r[0]] == r[3] for r in people)
