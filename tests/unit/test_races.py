"""connector.store.races: which aborts are run again, and how often."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from connector.store.races import lost_race, rerun_lost_races


class _Aborted(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _error(sqlstate: str) -> OperationalError:
    return OperationalError("UPDATE outbox ...", {}, _Aborted(sqlstate))


def test_deadlocks_and_serialization_failures_are_lost_races_nothing_else_is() -> None:
    assert lost_race(_error("40P01")) and lost_race(_error("40001"))
    assert not lost_race(_error("57014"))  # a cancelled statement
    assert not lost_race(IntegrityError("INSERT", {}, _Aborted("23505")))
    assert not lost_race(ValueError("40P01"))


def test_a_lost_race_runs_again_until_it_succeeds_or_the_attempts_run_out() -> None:
    calls: list[int] = []

    @rerun_lost_races
    def twice_lost() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _error("40P01")
        return "done"

    assert twice_lost() == "done" and len(calls) == 3

    def always_lost() -> None:
        calls.append(1)
        raise _error("40001")

    calls.clear()
    with pytest.raises(OperationalError):
        rerun_lost_races(always_lost, attempts=4)()
    assert len(calls) == 4


def test_any_other_error_is_raised_at_once() -> None:
    calls: list[int] = []

    @rerun_lost_races
    def cancelled() -> None:
        calls.append(1)
        raise _error("57014")

    with pytest.raises(OperationalError):
        cancelled()
    assert calls == [1]
