"""The checks every lead source passes (DESIGN.md "Tests"), as plain functions of an
adapter's contract case (`connector.sdk.SourceCase`) and a store, so the suite can run
them on every installed adapter and test_contract_bites.py can show each one failing
on a source broken on purpose. An `AssertionError` is a broken contract.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from connector.pipeline import IngestStats, Pipeline
from connector.ports import LeadSource, SourceError
from connector.sdk import SourceCase
from connector.store import Store
from connector.store.ingest import load_cursor


def run(store: Store, source: LeadSource) -> IngestStats:
    return Pipeline(store, workers=0).run(source)


def cursors(store: Store, source: LeadSource) -> dict[str, Any]:
    with store.engine.connect() as conn:
        return {s: load_cursor(conn, source.name, s) for s in source.streams()}


def config_schema_describes_every_field(case: SourceCase) -> None:
    schema = case.config_model.model_json_schema()
    undescribed = [
        f"{model}.{name}"
        for model, props in [("", schema.get("properties", {}))]
        + [(k, v.get("properties", {})) for k, v in schema.get("$defs", {}).items()]
        for name, prop in props.items()
        if not prop.get("description")
    ]
    assert undescribed == []


def check_fails_clearly_on_bad_credentials(case: SourceCase, store: Store) -> None:
    case.source(store).check()
    broken, hint = case.broken(store)
    with pytest.raises(SourceError) as caught:
        broken.check()
    assert hint in str(caught.value)


def cursors_only_move_forward(case: SourceCase, store: Store) -> None:
    source = case.source(store)
    run(store, source)
    first = cursors(store, source)
    assert first and all(v is not None for v in first.values())
    time.sleep(1.1)  # cursors of time-windowed sources are whole seconds
    case.add(3)
    stats = run(store, case.source(store))
    assert stats.created == 3
    later = cursors(store, source)
    assert all(case.order(later[s]) > case.order(first[s]) for s in first)


def rereading_changes_nothing(case: SourceCase, store: Store) -> None:
    """A second run stores nothing new. Weak alone: the store's dedupe on (source,
    source_id) passes it even for a source that ignores its cursor."""
    first = run(store, case.source(store))
    assert first.created == 6
    again = run(store, case.source(store))
    assert (again.created, again.updated, again.merged, again.quarantined) == (0, 0, 0, 0)


def reread_from_a_cursor_yields_at_most_the_lag_window(case: SourceCase, store: Store) -> None:
    """Reading a stream from the cursor a run returned yields at most the records the
    source's lag window re-reads on purpose: the cursor is used, not just stored."""
    source = case.source(store)
    assert run(store, source).created == 6
    stored = cursors(store, source)
    fresh = case.source(store)
    again = {
        stream: sum(len(batch.records) for batch in fresh.read(stream, cursor))
        for stream, cursor in stored.items()
    }
    assert again and all(n <= case.lag_records for n in again.values()), again


def a_throttle_loses_nothing(case: SourceCase, store: Store) -> None:
    """Under the API's own throttle answer the run ends without an error (the source
    pauses), nothing is skipped past, and once the throttle lifts every record comes."""
    served = case.throttle()
    if served is None:
        pytest.skip("the source has no remote API to throttle it")
    throttled = run(store, case.source(store))
    assert served() >= 1  # the API really answered with its throttle
    case.lift()
    after = run(store, case.source(store))
    assert throttled.created + after.created == 6
    assert run(store, case.source(store)).created == 0


def writing_the_same_batch_twice_changes_nothing(case: SourceCase, store: Store) -> None:
    source = case.source(store)
    [stream] = source.streams()
    records = [r for batch in source.read(stream, None) for r in batch.records]
    assert len(records) == 6
    once = Pipeline(store, workers=0).ingest(source.name, records)
    twice = Pipeline(store, workers=0).ingest(source.name, records)
    assert once.created == 6
    assert (twice.created, twice.updated, twice.unchanged) == (0, 0, 6)
