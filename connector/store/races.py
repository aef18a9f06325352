"""Transactions that lost a race on PostgreSQL and may simply run again."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError

# PostgreSQL's SQLSTATEs for a transaction aborted to break a deadlock (40P01) or a
# serialization failure (40001): nothing of it was written, and running it again reads
# and locks afresh.
RETRYABLE = frozenset({"40001", "40P01"})


def lost_race(exc: BaseException) -> bool:
    """Whether `exc` is a PostgreSQL abort that running the transaction again cures."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RETRYABLE


P = ParamSpec("P")
R = TypeVar("R")


def rerun_lost_races(fn: Callable[P, R], attempts: int = 5) -> Callable[P, R]:
    """`fn` (one transaction of its own) run again when PostgreSQL aborted it to break a
    deadlock or a serialization conflict; any other error, or the last attempt's, is
    raised."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, attempts + 1):
            try:
                return fn(*args, **kwargs)
            except DBAPIError as exc:
                if not lost_race(exc) or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    return run
