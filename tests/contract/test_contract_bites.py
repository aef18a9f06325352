"""The contract checks can fail: each is run on a source broken on purpose.

A source that ignores the cursor it is given (reads everything, every time) passes the
old "re-reading stores nothing new" check, because the store dedupes on (source,
source_id); the lag-window check catches it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from connector.ports import Batch, LeadSource, plugins
from connector.sdk import SourceCase
from connector.store import Store
from tests.contract import checks


class IgnoresItsCursor:
    """A source that reads from the start whatever cursor it is given."""

    def __init__(self, inner: LeadSource) -> None:
        self.inner, self.name = inner, inner.name

    def check(self) -> None:
        self.inner.check()

    def streams(self) -> list[str]:
        return self.inner.streams()

    def read(self, stream: str, cursor: Any) -> Iterator[Batch]:
        return self.inner.read(stream, None)

    def context(self) -> dict[str, Any]:
        return self.inner.context()


class Broken:
    """A working adapter's case whose sources are wrapped by `wrap`."""

    def __init__(self, case: SourceCase, wrap: Callable[[LeadSource], LeadSource]) -> None:
        self.case, self.wrap = case, wrap
        self.config_model: type[BaseModel] = case.config_model
        self.lag_records = case.lag_records

    def source(self, store: Store) -> LeadSource:
        return self.wrap(self.case.source(store))

    def broken(self, store: Store) -> tuple[LeadSource, str]:
        return self.case.broken(store)

    def add(self, n: int) -> None:
        self.case.add(n)

    def order(self, cursor: Any) -> Any:
        return self.case.order(cursor)

    def throttle(self) -> Callable[[], int] | None:
        return self.case.throttle()

    def lift(self) -> None:
        self.case.lift()

    def close(self) -> None:
        self.case.close()


@pytest.fixture
def csv_case(tmp_path: Path) -> Iterator[SourceCase]:
    made = plugins()["csv"].contract_source(tmp_path)  # type: ignore[attr-defined]
    yield made
    made.close()


def test_a_source_that_ignores_its_cursor_fails_the_lag_window_check(
    csv_case: SourceCase, store: Store
) -> None:
    broken = Broken(csv_case, IgnoresItsCursor)
    assert isinstance(broken, SourceCase)
    with pytest.raises(AssertionError):
        checks.reread_from_a_cursor_yields_at_most_the_lag_window(broken, store)


def test_the_old_check_alone_let_such_a_source_pass(csv_case: SourceCase, store: Store) -> None:
    # Why the lag-window check exists: dedupe hides the re-read from the store's counts.
    checks.rereading_changes_nothing(Broken(csv_case, IgnoresItsCursor), store)


def test_the_same_source_unbroken_passes(csv_case: SourceCase, store: Store) -> None:
    checks.reread_from_a_cursor_yields_at_most_the_lag_window(csv_case, store)


class ClaimsAThrottle(Broken):
    """A case that says it throttles its API but never does: the throttle check must
    not pass on a throttle nobody served."""

    def throttle(self) -> Callable[[], int] | None:
        return lambda: 0


def test_the_throttle_check_needs_a_throttle_really_served(
    csv_case: SourceCase, store: Store
) -> None:
    with pytest.raises(AssertionError):
        checks.a_throttle_loses_nothing(ClaimsAThrottle(csv_case, lambda s: s), store)
