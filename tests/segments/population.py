"""Random contacts for the segment tests, written straight to the store's tables and
kept as oracle records: the SQL and the Python evaluator see the same people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import delete, insert

from connector.model import STANDARD_FIELDS
from connector.segments.oracle import Lead, Record
from connector.store import Store
from connector.store.tables import contacts, interactions, leads, quarantine, status_history

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MOMENTS = [
    NOW - timedelta(days=d, hours=h) for d in (0, 1, 7, 14, 15, 29, 31, 90, 400) for h in (0, 3)
]
WORDS = ["Warsaw", "warsaw", "Łódź", "ACME", "acme corp", "kevin", "Kevin", "", "Zoë", "b", "a b"]
STATUSES = [0, 10, 20, 25, 30, 35, 60, 70, 99]

texts = st.one_of(st.none(), st.sampled_from(WORDS))
jsonish = st.one_of(
    st.none(),
    st.integers(-5, 3000),
    st.sampled_from([0.5, 1000.0, 1500.25, 70.0]),
    st.sampled_from(["1500", "vip", "VIP", "x", "2026-03-01", "2025-12-31"]),
    st.booleans(),
)
custom_values = st.one_of(jsonish, st.lists(jsonish, max_size=3))


@st.composite
def contact(draw: st.DrawFn, cid: int) -> dict[str, Any]:
    fields = {name: draw(texts) for name in ("first_name", "last_name", "company", "city", "owner")}
    custom = draw(
        st.dictionaries(
            st.sampled_from(["budget", "tags", "vip", "renewal", "is_test"]), custom_values
        )
    )
    created = draw(st.sampled_from(MOMENTS))
    return {
        "id": cid,
        "status": draw(st.sampled_from(STATUSES)),
        "status_changed_at": draw(st.one_of(st.none(), st.sampled_from(MOMENTS))),
        "email": draw(st.sampled_from([None, "a@x.com", "kevin@acme.com"])),
        "phone": draw(st.sampled_from([None, "+48500100200"])),
        **fields,
        "score": draw(st.one_of(st.none(), st.sampled_from([0.0, 50.0, 69.9, 70.0, 85.5, 100.0]))),
        "custom": custom,
        "merged_into": None,
        "created_at": created,
        "updated_at": created,
        "leads": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "source": st.sampled_from(["facebook", "csv", "Facebook"]),
                        "context": st.dictionaries(
                            st.sampled_from(
                                ["form_id", "form_name", "campaign_name", "platform", "ad_id"]
                            ),
                            st.one_of(
                                st.sampled_from(["123", "Spring Promo", "fb", "ig"]),
                                st.integers(1, 3),
                            ),
                        ),
                        "received_at": st.sampled_from(MOMENTS),
                    }
                ),
                max_size=2,
            )
        ),
        "moments": draw(st.lists(st.sampled_from(MOMENTS), max_size=2)),
        "history": draw(st.lists(st.sampled_from(MOMENTS), max_size=1)),
        "issue": draw(st.sampled_from([None, "open", "resolved"])),
        "merged": draw(st.booleans()) and cid > 1,
    }


def write(store: Store, people: list[dict[str, Any]]) -> list[Record]:
    """Replace the store's contacts with `people`; the oracle's records of the live ones."""
    records = []
    with store.engine.begin() as conn:
        for table in (quarantine, status_history, interactions, leads):
            conn.execute(delete(table))
        conn.execute(delete(contacts).where(contacts.c.merged_into.is_not(None)))
        conn.execute(delete(contacts))
        for p in people:
            row = {k: p.get(k) for k in ("id", "status", "status_changed_at", "score", "custom",
                                         "created_at", "updated_at", *STANDARD_FIELDS)}  # fmt: skip
            conn.execute(insert(contacts).values(**row))
        for p in people:
            cid = p["id"]
            for i, lead in enumerate(p["leads"]):
                conn.execute(
                    insert(leads).values(
                        source=lead["source"], source_id=f"{cid}-{i}", contact_id=cid,
                        payload_hash="h", ref="r", raw={}, context=lead["context"],
                        received_at=lead["received_at"],
                    )
                )  # fmt: skip
            for m in p["moments"]:
                conn.execute(
                    insert(interactions).values(
                        contact_id=cid, kind="visit", occurred_at=m, data={}
                    )
                )
            for m in p["history"]:
                conn.execute(
                    insert(status_history).values(contact_id=cid, to_status=10, origin="t", at=m)
                )
            if p["issue"]:
                conn.execute(
                    insert(quarantine).values(
                        source="csv", ref="r", field="email", reason="bad", raw={}, context={},
                        fingerprint=f"f{cid}", attempts=0, created_at=NOW, kind="field",
                        contact_id=cid, resolved_at=NOW if p["issue"] == "resolved" else None,
                    )
                )  # fmt: skip
            if p["merged"]:
                conn.execute(contacts.update().where(contacts.c.id == cid).values(merged_into=1))
                continue
            records.append(
                Record(
                    row={k: v for k, v in p.items() if k not in ("leads", "moments", "history")},
                    leads=[Lead(x["source"], x["context"], x["received_at"]) for x in p["leads"]],
                    moments=[*p["moments"], *p["history"]],
                    open_issues=p["issue"] == "open",
                )
            )
    return records


# -- expressions, as text (so the parser is exercised too) -------------------------------

OPS = ["=", "!=", "<", "<=", ">", ">="]
values_text = st.sampled_from(
    [
        "Warsaw",
        "warsaw",
        "'Łódź'",
        "ACME",
        "acme",
        "kevin",
        "''",
        "Zoë",
        "'a b'",
        "b",
        "70",
        "1500",
        "'kevin Warsaw'",
        "'ACME b'",
    ]
)
values_custom = st.sampled_from(
    [
        "1000",
        "1500",
        "'1500'",
        "0.5",
        "-5",
        "vip",
        "VIP",
        "yes",
        "no",
        "true",
        "2026-01-01",
        "x",
        "70",
    ]
)
ages = st.sampled_from(
    ["1d", "7d", "14d", "30d", "12h", "2w", "2026-11-17", "2026-11-30T09:00:00Z"]
)


def _in(vals: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(vals, min_size=1, max_size=3).map(lambda v: "(" + ", ".join(v) + ")")


condition = st.one_of(
    st.builds(
        lambda o, s: f"status {o} {s}",
        st.sampled_from(OPS),
        st.sampled_from(["New", "Qualified", "won", "Lost", "25", "Unknown"]),
    ),
    _in(st.sampled_from(["New", "Reach", "Won", "60"])).map(lambda v: f"status in {v}"),
    st.builds(
        lambda o, n: f"score {o} {n}",
        st.sampled_from(OPS),
        st.sampled_from(["0", "70", "69.9", "100"]),
    ),
    st.sampled_from(["score between 50 and 85.5", "score exists", "not score exists", "id > 5"]),
    st.builds(
        lambda f, o, v: f"{f} {o} {v}",
        st.sampled_from(["city", "company", "owner", "first_name", "email", "name"]),
        st.sampled_from([*OPS, "contains"]),
        values_text,
    ),
    st.builds(lambda f, v: f"{f} in {v}", st.sampled_from(["city", "owner"]), _in(values_text)),
    st.builds(
        lambda f, v: f"{f} not in {v}", st.sampled_from(["city", "company"]), _in(values_text)
    ),
    st.builds(lambda f: f"{f} exists", st.sampled_from(["city", "phone", "last_name"])),
    st.builds(
        lambda f, o, a: f"{f} {o} {a}",
        st.sampled_from(["created", "last_activity", "in_status", "updated"]),
        st.sampled_from(["<", "<=", ">", ">="]),
        ages,
    ),
    st.builds(
        lambda f, o, v: f"{f} {o} {v}",
        st.sampled_from(["source", "form", "campaign", "platform", "ad"]),
        st.sampled_from(["=", "!=", "contains"]),
        st.sampled_from(
            ["facebook", "Facebook", "123", "'Spring Promo'", "promo", "fb", "ig", "1"]
        ),
    ),
    st.builds(
        lambda f, v: f"{f} in {v}",
        st.sampled_from(["source", "form"]),
        _in(st.sampled_from(["csv", "123", "x"])),
    ),
    st.sampled_from(
        [
            "form exists",
            "ad exists",
            "terminal",
            "has_phone",
            "has_email",
            "has_issues",
            "is_test",
            "is_test = no",
            "not terminal",
            "has_issues = yes",
        ]
    ),
    st.builds(
        lambda k, o, v: f"{k} {o} {v}",
        st.sampled_from(["budget", "custom.tags", "vip", "renewal", "is_test"]),
        st.sampled_from([*OPS, "contains"]),
        values_custom,
    ),
    st.builds(lambda k, v: f"{k} in {v}", st.sampled_from(["budget", "tags"]), _in(values_custom)),
    st.builds(lambda k: f"{k} exists", st.sampled_from(["budget", "tags", "vip", "nothing"])),
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, b: f"{a} and {b}", children, children),
        st.builds(lambda a, b: f"({a} or {b})", children, children),
        children.map(lambda a: f"not ({a})"),
    )


# A lambda: hypothesis checks by reading the source that extend uses its argument.
expressions = st.recursive(condition, lambda inner: _combine(inner), max_leaves=5)
