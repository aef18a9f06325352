"""Recency: every value remembers when it was observed, and an older observation never
overwrites a newer one, whatever order records arrive in, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.model import Lead
from connector.pipeline import Pipeline
from connector.store import Store
from connector.store import contacts as cs

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CITIES = ["Kraków", "Gdańsk", "Łódź", "Hà Nội", "Ipoh"]
COMPANIES = ["ACME", "Globex", "Initech"]
_run = itertools.count()


def observation(email: str, n: int, obs: dict[str, Any]) -> Lead:
    fields = {"email": email, **{k: obs[k] for k in ("city", "company") if k in obs}}
    custom = {"budget": obs["budget"]} if "budget" in obs else {}
    return Lead(
        source="recency",
        ref=f"obs {n}",
        fields=fields,
        custom=custom,
        source_id=f"{email}:{n}",
        occurred_at=T0 + timedelta(days=obs["day"]),
        raw={"n": n, **obs},
    )


def contact_of(store: Store, email: str) -> dict[str, Any]:
    [row] = [c for c in cs.list_contacts(store, limit=10_000)[1] if c["email"] == email]
    shown = cs.show_contact(store, row["id"])
    keep = ("phone", "city", "company", "status", "custom")
    return {k: shown[k] for k in keep}


def ingest_in_batches(store: Store, records: list[Lead], cuts: list[int]) -> None:
    bounds = sorted({c % (len(records) + 1) for c in cuts} | {0, len(records)})
    for start, end in itertools.pairwise(bounds):
        Pipeline(store, workers=0).ingest("recency", records[start:end])


def test_newer_observation_wins_in_one_batch(store: Store) -> None:
    """The issue's case: Graph returns newest first, [today: Gdańsk, 30 days ago: Kraków]."""
    today = Lead("graph", "1", {"email": "ania@x.pl", "city": "Gdańsk"}, source_id="1")
    today.occurred_at = T0 + timedelta(days=30)
    older = Lead("graph", "2", {"email": "ania@x.pl", "city": "Kraków"}, source_id="2")
    older.occurred_at = T0
    stats = Pipeline(store, workers=0).ingest("graph", [today, older])
    assert contact_of(store, "ania@x.pl")["city"] == "Gdańsk"
    # The older record changed nothing, but it was read: every row has one outcome.
    assert (stats.created, stats.folded, stats.rows) == (1, 1, 2)
    # ... and across batches: an old lead from a backfill does not undo a newer one.
    late = Lead("graph", "3", {"email": "ania@x.pl", "city": "Łódź"}, source_id="3")
    late.occurred_at = T0 + timedelta(days=10)
    again = Pipeline(store, workers=0).ingest("graph", [late])
    assert contact_of(store, "ania@x.pl")["city"] == "Gdańsk"
    assert (again.unchanged, again.rows) == (1, 1)


observations = st.lists(
    st.fixed_dictionaries(
        {"day": st.integers(0, 5)},  # few days: ties at one time happen too
        optional={
            "city": st.sampled_from(CITIES),
            "company": st.sampled_from(COMPANIES),
            "budget": st.integers(0, 3),
        },
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    obs=observations,
    order=st.randoms(use_true_random=False),
    cuts=st.lists(st.integers(0, 8), max_size=3),
)
def test_any_order_of_the_same_observations_gives_the_same_contact(
    store: Store, obs: list[dict[str, Any]], order: Any, cuts: list[int]
) -> None:
    run = next(_run)
    first, second = f"a{run}@recency-test.com", f"b{run}@recency-test.com"
    ingest_in_batches(store, [observation(first, n, o) for n, o in enumerate(obs)], [])
    shuffled = list(enumerate(obs))
    order.shuffle(shuffled)
    ingest_in_batches(store, [observation(second, n, o) for n, o in shuffled], cuts)
    a, b = contact_of(store, first), contact_of(store, second)
    assert a == b
    # And it is what recency says: the newest observation, the larger value at a tie.
    for name in ("city", "company", "budget"):
        seen = [(o["day"], o[name]) for o in obs if name in o]
        got = a["custom"].get(name) if name == "budget" else a[name]
        assert got == (max(seen)[1] if seen else None)
