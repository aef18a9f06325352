"""The suite every lead source passes (DESIGN.md "Tests"; the Singer SDK habit): each
adapter supplies a harness that makes a source with data in it, a broken one, and new
data; the checks are the same for all, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from pydantic import BaseModel

from connector.mapping import Mapping
from connector.pipeline import Pipeline
from connector.ports import LeadSource, SourceError
from connector.store import Store
from connector.store.ingest import load_cursor


class Harness(Protocol):
    config_model: type[BaseModel]

    def source(self, store: Store) -> LeadSource: ...
    def broken(self, store: Store) -> tuple[LeadSource, str]: ...
    def add(self, n: int) -> None: ...
    def order(self, cursor: Any) -> Any: ...


class CsvHarness:
    config_model = Mapping

    def __init__(self, tmp: Path) -> None:
        from adapters.csv.source import CsvSource

        self.path = tmp / "leads.csv"
        self.rows = ["Email,Phone,Name"]
        self.add(6)
        self.mapping = Mapping.model_validate(
            {"columns": {"Email": "email", "Phone": "phone", "Name": "full_name"}}
        )
        self.make = lambda paths: CsvSource("contract-csv", paths, self.mapping, None)

    def add(self, n: int) -> None:
        start = len(self.rows)
        self.rows += [
            f"p{i}@example.com,+4860070{i:04d},Person {i}" for i in range(start, start + n)
        ]
        self.path.write_text("\n".join(self.rows) + "\n", encoding="utf-8")

    def source(self, store: Store) -> LeadSource:
        return self.make([self.path])  # type: ignore[no-any-return]

    def broken(self, store: Store) -> tuple[LeadSource, str]:
        return self.make([self.path.with_name("missing.csv")]), "no such file"

    def order(self, cursor: Any) -> Any:
        return cursor["row"]


class FacebookHarness:
    def __init__(self) -> None:
        from adapters.facebook.config import FacebookConfig
        from adapters.facebook.fake import FakeGraph

        self.config_model = FacebookConfig
        self.fake = FakeGraph(seed=5)
        self.fake.start()
        self.page = self.fake.add_page("Contract")
        self.form = self.fake.add_form(self.page.id, name="Form")
        self.clock = time.time() - 3600
        self.history = True
        self.add(6)

    def add(self, n: int) -> None:
        # The first leads are an hour of history; later ones are created as they arrive.
        history, self.history = self.history, False
        for i in range(n):
            self.clock = self.clock + 1 if history else time.time()
            self.fake.add_lead(
                self.form,
                {"email": f"p{self.clock:.3f}-{i}@example.com", "full_name": f"Person {i}"},
                created_time=self.clock,
            )

    def _config(self, token: str) -> Any:
        return self.config_model.model_validate(
            {
                "app_id": self.fake.app_id,
                "app_secret": self.fake.app_secret,
                "graph_url": self.fake.base_url,
                "pages": [{"id": self.page.id, "access_token": token}],
                "lag": 0,
                "page_size": 4,
            }
        )

    def source(self, store: Store) -> LeadSource:
        from adapters.facebook.source import FacebookSource

        return FacebookSource(self._config(self.page.token), store.catalogue, batch_size=4)

    def broken(self, store: Store) -> tuple[LeadSource, str]:
        from adapters.facebook.source import FacebookSource

        source = FacebookSource(self._config("not-a-token"), store.catalogue)
        return source, "renew the access token"

    def order(self, cursor: Any) -> Any:
        return cursor["until"]

    def close(self) -> None:
        self.fake.stop()


@pytest.fixture(params=["csv", "facebook"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    made: Any = CsvHarness(tmp_path) if request.param == "csv" else FacebookHarness()
    yield made
    if hasattr(made, "close"):
        made.close()


def run(store: Store, source: LeadSource) -> Any:
    return Pipeline(store, workers=0).run(source)


def cursors(store: Store, source: LeadSource) -> dict[str, Any]:
    with store.engine.connect() as conn:
        return {s: load_cursor(conn, source.name, s) for s in source.streams()}


def test_config_schema_describes_every_field(harness: Harness) -> None:
    schema = harness.config_model.model_json_schema()
    undescribed = [
        f"{model}.{name}"
        for model, props in [("", schema.get("properties", {}))]
        + [(k, v.get("properties", {})) for k, v in schema.get("$defs", {}).items()]
        for name, prop in props.items()
        if not prop.get("description")
    ]
    assert undescribed == []


def test_check_fails_clearly_on_bad_credentials(harness: Harness, store: Store) -> None:
    harness.source(store).check()
    broken, hint = harness.broken(store)
    with pytest.raises(SourceError) as caught:
        broken.check()
    assert hint in str(caught.value)


def test_cursors_only_move_forward(harness: Harness, store: Store) -> None:
    source = harness.source(store)
    run(store, source)
    first = cursors(store, source)
    assert first and all(v is not None for v in first.values())
    time.sleep(1.1)  # cursors of time-windowed sources are whole seconds
    harness.add(3)
    stats = run(store, harness.source(store))
    assert stats.created == 3
    later = cursors(store, source)
    assert all(harness.order(later[s]) > harness.order(first[s]) for s in first)


def test_rereading_from_the_cursor_yields_nothing_new(harness: Harness, store: Store) -> None:
    source = harness.source(store)
    first = run(store, source)
    assert first.created == 6
    again = run(store, harness.source(store))
    assert (again.created, again.updated, again.merged, again.quarantined) == (0, 0, 0, 0)


def test_writing_the_same_batch_twice_changes_nothing(harness: Harness, store: Store) -> None:
    source = harness.source(store)
    [stream] = source.streams()
    records = [r for batch in source.read(stream, None) for r in batch.records]
    assert len(records) == 6
    once = Pipeline(store, workers=0).ingest(source.name, records)
    twice = Pipeline(store, workers=0).ingest(source.name, records)
    assert once.created == 6
    assert (twice.created, twice.updated, twice.unchanged) == (0, 0, 6)
