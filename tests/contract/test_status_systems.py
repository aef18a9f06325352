"""The suite every two-way system passes (StatusSystem, issue 12): every installed
adapter whose plugin offers `contract_status(workdir)` (connector.sdk's `StatusCase`:
the system's pull and push against its emulator, a person's edit there, a throttle)
gets the checks of tests/contract/status_checks.py, on SQLite and on PostgreSQL, found
through the entry points like the lead sources in test_sources.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.config import SyncConfig
from connector.ports import plugins
from connector.sdk import StatusCase
from connector.store import Store
from connector.sync import fanout
from tests.contract import status_checks
from tests.contract.adapters import STATUS_SYSTEMS


def connected(case: StatusCase, store: Store) -> None:
    """The store fans out to the case's system and to a second one."""
    fanout.install((case.name, status_checks.OTHER), SyncConfig(), store.engine)


@pytest.fixture(
    params=STATUS_SYSTEMS
    or [pytest.param("none", marks=pytest.mark.skip(reason="no adapter offers contract_status"))]
)
def status_case(
    request: pytest.FixtureRequest, tmp_path: Path, store: Store
) -> Iterator[StatusCase]:
    made = plugins()[request.param].contract_status(tmp_path)  # type: ignore[attr-defined]
    assert isinstance(made, StatusCase)
    connected(made, store)
    yield made
    fanout.uninstall(store.engine)
    made.close()


def test_a_push_writes_the_status_and_records_it(status_case: StatusCase, store: Store) -> None:
    status_checks.a_push_writes_the_status_and_records_it(status_case, store)


def test_our_own_write_coming_back_is_dropped_as_an_echo(
    status_case: StatusCase, store: Store
) -> None:
    status_checks.our_own_write_coming_back_is_dropped(status_case, store)


def test_a_change_made_there_after_our_write_is_taken(
    status_case: StatusCase, store: Store
) -> None:
    status_checks.a_change_made_there_after_our_write_is_taken(status_case, store)


def test_a_throttled_push_loses_nothing(status_case: StatusCase, store: Store) -> None:
    status_checks.a_throttled_push_loses_nothing(status_case, store)
