"""Concurrent writers: four ingesters and a person merging contacts, all at once over
overlapping identities, leave the store as a serial replay of the same work would:
the same people, nothing written into a tombstone, no update lost. SQLite and
PostgreSQL (where the writers really overlap: rows are locked in id order)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, select, text

from connector.model import Lead
from connector.pipeline import Pipeline
from connector.statuses import Catalogue
from connector.store import Store, open_store
from connector.store import contacts as cs
from connector.store.tables import (
    contacts,
    identities,
    interactions,
    leads,
    metadata,
    status_history,
)
from tests.contract.test_store import failures_of

PEOPLE = 16
MERGED = [(2 * k, 2 * k + 1) for k in range(4)]  # people 0..7 are merged by hand in pairs
T0 = datetime(2026, 11, 1, tzinfo=UTC)
CITIES = ["Kraków", "Gdańsk", "Łódź", "Ipoh", "Huế"]


def email(p: int) -> str:
    return f"person{p}@overlap-test.com"


def phone(p: int) -> str:
    return f"+4860070{p:04d}"


def records() -> list[Lead]:
    """Each person seen six times: by email, by phone, by both (which merges the two),
    each observation with a value of its own and a time of its own."""
    out = []
    n = 0
    for rnd in range(6):
        for p in range(PEOPLE):
            fields = {"city": CITIES[(p + rnd) % len(CITIES)]}
            if rnd % 3 != 1:
                fields["email"] = email(p)
            if rnd % 3 != 0:
                fields["phone"] = phone(p)
            out.append(
                Lead(
                    source="overlap",
                    ref=f"obs {n}",
                    fields=fields,
                    custom={f"r{n}": n},
                    source_id=f"obs-{n}",
                    occurred_at=T0 + timedelta(hours=(n * 7919) % 1000),  # shuffled times
                    raw={"n": n},
                )
            )
            n += 1
    return out


def ingest(store: Store, part: list[Lead]) -> None:
    for start in range(0, len(part), 3):  # small batches: many overlapping transactions
        Pipeline(store, workers=0).ingest("overlap", part[start : start + 3])


def owner(store: Store, key: str) -> int | None:
    with store.engine.connect() as conn:
        found = conn.execute(
            select(identities.c.contact_id).where(identities.c.key == key)
        ).scalar_one_or_none()
        return None if found is None else cs.live_id(conn, found)


def merge_pairs(store: Store, wait: bool) -> None:
    """A person merges each pair as soon as both people exist (by email)."""
    pending = list(MERGED)
    deadline = time.monotonic() + 120
    while pending:
        a, b = pending[0]
        x, y = owner(store, f"email:{email(a)}"), owner(store, f"email:{email(b)}")
        if x is None or y is None:
            assert wait and time.monotonic() < deadline, "the people never appeared"
            time.sleep(0.01)
            continue
        cs.merge_contacts(store, x, y, actor="ops")
        pending.pop(0)


def snapshot(store: Store) -> dict[frozenset[str], Any]:
    """The store without its ids: per live contact (named by its identity keys) its
    leads, its values and where each came from; and that nothing points at a tombstone."""
    with store.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(contacts))}
        live = {i for i, r in rows.items() if r.merged_into is None}
        for r in rows.values():
            assert r.merged_into is None or r.merged_into in live, "tombstone chain"
        for table in (identities, leads, interactions, status_history):
            held = set(conn.execute(select(table.c.contact_id)).scalars())
            assert held <= live, f"{table.name} point at a tombstone"
        keys: dict[int, set[str]] = {}
        for key, cid in conn.execute(select(identities.c.key, identities.c.contact_id)):
            keys.setdefault(cid, set()).add(key)
        got: dict[int, set[str]] = {}
        for sid, cid in conn.execute(select(leads.c.source_id, leads.c.contact_id)):
            got.setdefault(cid, set()).add(sid)
    out: dict[frozenset[str], Any] = {}
    for cid in live:
        r = rows[cid]
        # Every observation's own value is on the contact holding its keys: none lost.
        out[frozenset(keys[cid])] = (frozenset(got[cid]), frozenset(r.custom), r.status)
        if len(keys[cid]) == 2:  # one person, never merged by hand: recency decides
            out[frozenset(keys[cid]) | {"city"}] = r.city
    return out


def expected_city(p: int, all_records: list[Lead]) -> str:
    mine = [
        r
        for r in all_records
        if email(p) == r.fields.get("email") or phone(p) == r.fields.get("phone")
    ]
    return max(mine, key=lambda r: r.occurred_at or T0).fields["city"]


def fresh(url: str) -> Store:
    if url.startswith("postgresql"):
        engine = create_engine(url)
        with engine.begin() as conn:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        engine.dispose()
    return open_store(url, Catalogue.default(), upgrade=True)


def test_concurrent_ingesters_and_merges_match_a_serial_replay(store_url: str) -> None:
    work = records()
    parts = [work[i::4] for i in range(4)]  # each ingester gets every person

    store = fresh(store_url)
    try:

        def run(n: int) -> None:
            if n < 4:
                ingest(store, parts[n])
            else:
                merge_pairs(store, wait=True)

        failed = failures_of(run, 5)
        assert failed == [], failed
        concurrent = snapshot(store)
    finally:
        store.close()

    if store_url.startswith("sqlite"):
        store_url = store_url.replace("store.db", "serial.db")
    store = fresh(store_url)
    try:
        for part in parts:
            ingest(store, part)
        merge_pairs(store, wait=False)
        serial = snapshot(store)
    finally:
        store.close()

    assert concurrent == serial
    people = [k for k in serial if "city" not in k]
    assert len(people) == PEOPLE - len(MERGED)
    for p in range(2 * len(MERGED), PEOPLE):
        key = frozenset({f"email:{email(p)}", f"phone:{phone(p)}", "city"})
        assert serial[key] == expected_city(p, work)
