"""What both databases do the same way, written once for each: text that orders by
code point, `contains` that ignores ASCII case, and comparisons that are never NULL.

SQLite's lower() folds only ASCII letters; PostgreSQL gets the same with translate().
PostgreSQL's COLLATE "C" orders by code point, as SQLite's BINARY and Python's str do.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func

Clause = ColumnElement[bool]
UPPER, LOWER = string.ascii_uppercase, string.ascii_lowercase


def ascii_fold(text: str) -> str:
    """ASCII letters lowered, nothing else touched: what both databases do the same."""
    return text.translate(str.maketrans(UPPER, LOWER))


OPS: dict[str, Callable[[Any, Any], Clause]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class Dialect:
    """The per-database spelling of the language's comparisons."""

    def __init__(self, dialect: str) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"segments run on sqlite or postgresql, not {dialect}")
        self.pg = dialect == "postgresql"

    def _ordered(self, col: Any) -> Any:
        return col.collate("C") if self.pg else col

    def _contains(self, col: Any, needle: str) -> Clause:
        folded = ascii_fold(needle)
        if self.pg:
            return func.strpos(func.translate(col, UPPER, LOWER), folded) > 0
        return func.instr(func.lower(col), folded) > 0

    def _compare(self, col: Any, op: str, values: tuple[Any, ...], ordered: bool) -> Clause:
        present: Clause = col.is_not(None)
        if op == "exists":
            return present
        if op == "in":
            return and_(present, col.in_(values)) if values else false()
        if op == "contains":
            return and_(present, self._contains(col, str(values[0])))
        target = self._ordered(col) if ordered and op != "=" else col
        return and_(present, OPS[op](target, values[0]))
