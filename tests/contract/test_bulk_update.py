"""`bulk.update_values` (one statement a batch on PostgreSQL, one cached statement on
SQLite) writes exactly what Core's executemany of `UPDATE … WHERE id = :id` writes, on
both stores: every column type a contact has (text with accents and quotes, NULLs,
nested and empty JSON, aware datetimes with microseconds), rows left alone untouched."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from connector.store import Store
from connector.store.bulk import update_values
from connector.store.tables import contacts

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "city",
    "country",
    "status",
    "status_changed_at",
    "custom",
    "observed",
    "updated_at",
)
TEXTS = ["Małgorzata", "Nguyễn Văn Hùng", 'O\'Brien "Jr"', "a\\b", "", "{}", "null", "岩田"]


def _contact(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "status": 1,
        "email": f"p{i}@example.com",
        "custom": {},
        "created_at": NOW,
        "updated_at": NOW,
    }


def _values(rng: random.Random, i: int) -> tuple[Any, ...]:
    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.2 else value

    when = NOW + timedelta(seconds=rng.randrange(10**6), microseconds=rng.randrange(10**6))
    custom = rng.choice(
        [
            {},
            {"budget": 1500.5, "tags": ["a", "b"], "nested": {"x": None, "y": True}},
            {"note": rng.choice(TEXTS), "n": rng.randrange(-5, 10**12)},
        ]
    )
    return (
        i,
        maybe(f"new{i}@example.com"),
        maybe(rng.choice(TEXTS)),
        maybe(rng.choice(TEXTS)),
        maybe(rng.choice(TEXTS)),
        maybe(rng.choice(["PL", "VN"])),
        rng.randrange(1, 9),
        maybe(when),
        custom,
        maybe(rng.choice([{"*": "2026-12-01T12:00:00.000000Z"}, {"email": "x", "custom.n": "y"}])),
        when,
    )


def _rows(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(contacts).order_by(contacts.c.id))]


def _reset(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(contacts.delete())
        conn.execute(insert(contacts), [_contact(i) for i in range(1, 41)])


def test_update_values_writes_what_core_writes(store: Store) -> None:
    for seed in range(5):
        rng = random.Random(seed)
        changes = [_values(rng, i) for i in sorted(rng.sample(range(1, 41), 25))]
        _reset(store)
        with store.engine.begin() as conn:
            stmt = (
                update(contacts)
                .where(contacts.c.id == bindparam("_id"))
                .values({name: bindparam(name) for name in COLUMNS})
            )
            conn.execute(
                stmt, [{"_id": v[0], **dict(zip(COLUMNS, v[1:], strict=True))} for v in changes]
            )
        expected = _rows(store)
        _reset(store)
        with store.engine.begin() as conn:
            update_values(conn, contacts, COLUMNS, changes)
        assert _rows(store) == expected
        untouched = set(range(1, 41)) - {v[0] for v in changes}
        assert all(
            r[contacts.c.keys().index("email")] == f"p{r[0]}@example.com"
            for r in expected
            if r[0] in untouched
        )


def test_update_values_of_nothing_writes_nothing(store: Store) -> None:
    _reset(store)
    before = _rows(store)
    with store.engine.begin() as conn:
        update_values(conn, contacts, COLUMNS, [])
    assert _rows(store) == before
