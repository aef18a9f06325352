"""The property the issue asks for: for random expressions over random contacts, the
SQL the compiler writes selects exactly the contacts the plain-Python evaluator picks,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from connector.segments import Segment, SegmentError, check_sort, page
from connector.segments.oracle import Record, evaluate
from connector.segments.sql import Compiler
from connector.store import Store
from connector.store.tables import contacts
from tests.segments.population import NOW, contact, expressions, write


def _sql_ids(store: Store, segment: Segment) -> set[int]:
    compiler = Compiler(store.dialect, store.catalogue)
    with store.reader.connect() as conn:
        return set(conn.execute(select(contacts.c.id).where(segment.where(compiler))).scalars())


@settings(
    # 150 took a minute on PostgreSQL, the suite's slowest test; `LEADSYNC_SEGMENT_EXAMPLES`
    # asks for more (the grammar's own changes deserve a long run).
    max_examples=int(os.environ.get("LEADSYNC_SEGMENT_EXAMPLES", "60")),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_sql_selects_what_the_evaluator_selects(store: Store, data: st.DataObject) -> None:
    size = data.draw(st.integers(5, 40), label="contacts")
    people = [data.draw(contact(cid), label=f"contact {cid}") for cid in range(1, size + 1)]
    records = write(store, people)
    for _ in range(15):
        text = data.draw(expressions, label="where")
        try:
            segment = Segment.of(text, store.catalogue, NOW)
        except SegmentError:
            # The generator writes some nonsense on purpose (`is_test = 1000`): refused
            # with a column, which tests/segments/test_language.py checks.
            continue
        assert segment.expr is not None
        expected = {r.row["id"] for r in records if evaluate(segment.expr, r, store.catalogue)}
        assert _sql_ids(store, segment) == expected, text


SORT_KEYS = ["score", "-score", "status", "-status", "name", "-name", "city", "-city",
             "created", "-created", "email"]  # fmt: skip


def _python_order(records: list[Record], sort: list[tuple[str, bool]], store: Store) -> list[int]:
    """The order the language promises: a missing value sorts lowest, text by code
    point, status by rank (an unlisted status lowest of all), ties by id."""
    ranks = {s.id: s.rank for s in store.catalogue}

    def key(r: Record, name: str) -> Any:
        row = r.row
        if name == "status":
            return ranks.get(row["status"], -1)
        if name == "name":
            return f"{row['last_name'] or ''} {row['first_name'] or ''}"
        if name == "created":
            return row["created_at"]
        value = row[name]
        return (value is not None, value if value is not None else 0)

    ordered = sorted(records, key=lambda r: r.row["id"])
    for name, descending in reversed(sort):
        ordered.sort(key=lambda r, n=name: key(r, n), reverse=descending)  # type: ignore[misc]
    return [r.row["id"] for r in ordered]


@settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_sorted_pages_follow_the_promised_order(store: Store, data: st.DataObject) -> None:
    size = data.draw(st.integers(2, 30), label="contacts")
    people = [data.draw(contact(cid), label=f"contact {cid}") for cid in range(1, size + 1)]
    records = write(store, people)
    for _ in range(4):
        keys = data.draw(st.lists(st.sampled_from(SORT_KEYS), min_size=1, max_size=3), label="sort")
        sort = check_sort(",".join(keys))
        got = [
            row["id"] for row in page(store, Segment.of(None, store.catalogue), sort, ["id"], 1000)
        ]
        assert got == _python_order(records, sort, store), keys
