"""The contract checks can fail: each is run on a source broken on purpose.

A source that ignores the cursor it is given (reads everything, every time) passes the
old "re-reading stores nothing new" check, because the store dedupes on (source,
source_id); the lag-window check catches it. A two-way system whose push does not
record what it wrote, or whose pull sees nothing, fails the two-way checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import update

from connector.config import SyncConfig
from connector.ports import Batch, DeliveryResult, LeadSource, OutboxRow, StatusSystem, plugins
from connector.sdk import SourceCase, StatusCase
from connector.store import Store
from connector.store.tables import system_links
from connector.sync import fanout
from tests.contract import checks, status_checks
from tests.contract.adapters import STATUS_SYSTEMS


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


# -- two-way systems (tests/contract/status_checks.py) ---------------------------------


class Forgetful:
    """A system whose push writes the value but does not remember it in system_links
    (as a push that skips `links.record_written` would)."""

    def __init__(self, inner: StatusSystem, store: Store) -> None:
        self.inner, self.store, self.name = inner, store, inner.name

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        results = self.inner.deliver(rows)
        with self.store.engine.begin() as conn:
            conn.execute(
                update(system_links)
                .where(system_links.c.system == self.name)
                .values(last_written_value=None, last_written_at=None)
            )
        return results


class BrokenStatus:
    """A working two-way case whose push is `Forgetful`, or whose pull reads nothing."""

    def __init__(self, case: StatusCase, forget: bool = False, blind: bool = False) -> None:
        self.case, self.forget, self.blind = case, forget, blind
        self.name = case.name
        self.pulls = 0

    def pull(self, store: Store) -> None:
        self.pulls += 1
        if not self.blind or self.pulls == 1:  # a blind system reads once, then nothing
            self.case.pull(store)

    def system(self, store: Store) -> StatusSystem:
        inner = self.case.system(store)
        return Forgetful(inner, store) if self.forget else inner

    def word(self, status: str) -> str | None:
        return self.case.word(status)

    def set_there(self, external_id: str, status: str) -> None:
        self.case.set_there(external_id, status)

    def shown(self, external_id: str) -> str | None:
        return self.case.shown(external_id)

    def throttle(self) -> Callable[[], int] | None:
        return self.case.throttle()

    def lift(self) -> None:
        self.case.lift()

    def close(self) -> None:
        self.case.close()


@pytest.fixture(params=STATUS_SYSTEMS)
def two_way(request: pytest.FixtureRequest, tmp_path: Path, store: Store) -> Iterator[StatusCase]:
    made = plugins()[request.param].contract_status(tmp_path)  # type: ignore[attr-defined]
    fanout.install((made.name, status_checks.OTHER), SyncConfig(), store.engine)
    yield made
    fanout.uninstall(store.engine)
    made.close()


def test_a_push_that_does_not_record_its_write_fails_the_record_check(
    two_way: StatusCase, store: Store
) -> None:
    broken = BrokenStatus(two_way, forget=True)
    assert isinstance(broken, StatusCase)
    with pytest.raises(AssertionError):
        status_checks.a_push_writes_the_status_and_records_it(broken, store)


def test_a_sheet_that_forgets_its_write_takes_its_own_echo_back(
    store: Store, tmp_path: Path
) -> None:
    # A sheet dates what it shows when it is read: without the last-written value the
    # engine takes our older write, read back, for a person's newer edit, and undoes
    # the store's change (HubSpot dates its values, so there the recency rule also
    # refuses it: the record check above is what fails for it).
    case = plugins()["sheets"].contract_status(tmp_path)  # type: ignore[attr-defined]
    fanout.install((case.name, status_checks.OTHER), SyncConfig(), store.engine)
    try:
        with pytest.raises(AssertionError, match="taken back"):
            status_checks.our_own_write_coming_back_is_dropped(
                BrokenStatus(case, forget=True), store
            )
    finally:
        fanout.uninstall(store.engine)
        case.close()


def test_a_system_whose_pull_sees_no_change_fails_the_change_check(
    two_way: StatusCase, store: Store
) -> None:
    with pytest.raises(AssertionError):
        status_checks.a_change_made_there_after_our_write_is_taken(
            BrokenStatus(two_way, blind=True), store
        )


def test_the_two_way_systems_unbroken_pass(two_way: StatusCase, store: Store) -> None:
    status_checks.a_push_writes_the_status_and_records_it(two_way, store)
