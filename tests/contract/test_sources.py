"""The suite every lead source passes (DESIGN.md "Tests"; the Singer SDK habit): every
installed adapter whose plugin offers `contract_source(workdir)` (connector.sdk's
`SourceCase`: a source with data in it, a broken one, new data, a throttle) gets the
same checks (tests/contract/checks.py), on SQLite and on PostgreSQL. Adapters are found
through their entry points; nothing here names one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.ports import plugins
from connector.sdk import SourceCase
from connector.store import Store
from tests.contract import checks
from tests.contract.adapters import SOURCES, STATUS_SYSTEMS

# Every installed adapter offers a contract case, or says in `contract_exempt` why the
# suite's source checks do not apply to it (and where it is tested instead).


@pytest.fixture(params=SOURCES)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SourceCase]:
    made = plugins()[request.param].contract_source(tmp_path)  # type: ignore[attr-defined]
    assert isinstance(made, SourceCase)
    yield made
    made.close()


@pytest.mark.parametrize("name", sorted(plugins()))
def test_every_installed_adapter_offers_a_contract_case(name: str) -> None:
    exempt = getattr(plugins()[name], "contract_exempt", None)
    if exempt:
        pytest.skip(f"{name}: {exempt}")
    assert name in SOURCES or name in STATUS_SYSTEMS, (
        f"the {name} adapter offers neither contract_source() nor contract_status()"
    )


def test_config_schema_describes_every_field(case: SourceCase) -> None:
    checks.config_schema_describes_every_field(case)


def test_check_fails_clearly_on_bad_credentials(case: SourceCase, store: Store) -> None:
    checks.check_fails_clearly_on_bad_credentials(case, store)


def test_cursors_only_move_forward(case: SourceCase, store: Store) -> None:
    checks.cursors_only_move_forward(case, store)


def test_rereading_changes_nothing(case: SourceCase, store: Store) -> None:
    checks.rereading_changes_nothing(case, store)


def test_a_reread_from_a_cursor_yields_at_most_the_lag_window(
    case: SourceCase, store: Store
) -> None:
    checks.reread_from_a_cursor_yields_at_most_the_lag_window(case, store)


def test_a_throttle_loses_nothing(case: SourceCase, store: Store) -> None:
    checks.a_throttle_loses_nothing(case, store)


def test_writing_the_same_batch_twice_changes_nothing(case: SourceCase, store: Store) -> None:
    checks.writing_the_same_batch_twice_changes_nothing(case, store)
