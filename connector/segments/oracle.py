"""The same expressions evaluated in plain Python, on one contact at a time.

Not how segments run (sql.py runs them in the database): this is the test oracle the
property test compares the SQL with, written from the language's rules rather than
from the SQL, so a difference is a bug in one of them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.segments.dialect import ascii_fold
from connector.segments.sql import CONTEXT_KEYS
from connector.segments.tree import And, Not, Or, Resolved, Term
from connector.statuses import Catalogue


@dataclass
class Lead:
    source: str
    context: dict[str, Any]
    received_at: datetime


@dataclass
class Record:
    """One contact as the evaluator sees it: its row and what hangs off it."""

    row: dict[str, Any]
    leads: list[Lead] = field(default_factory=list)
    # Interactions' and status changes' moments (leads' come from `leads`).
    moments: list[datetime] = field(default_factory=list)
    open_issues: bool = False


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def evaluate(expr: Resolved, record: Record, catalogue: Catalogue) -> bool:
    """Whether `record` is in the segment `expr`."""
    if isinstance(expr, And):
        return all(evaluate(e, record, catalogue) for e in expr.items)
    if isinstance(expr, Or):
        return any(evaluate(e, record, catalogue) for e in expr.items)
    if isinstance(expr, Not):
        return not evaluate(expr.item, record, catalogue)
    assert isinstance(expr, Term)
    return _term(expr, record, catalogue)


def _plain(value: Any, op: str, values: Sequence[Any]) -> bool:
    """A text or number value against a term; a missing value matches nothing."""
    if value is None:
        return False
    if op == "exists":
        return True
    if op == "in":
        return value in values
    if op == "contains":
        return ascii_fold(str(values[0])) in ascii_fold(str(value))
    return _OPS[op](value, values[0])


def _term(term: Term, record: Record, catalogue: Catalogue) -> bool:
    row = record.row
    kind, target = term.field.kind, term.field.target
    if kind == "status":
        return row["status"] in term.values
    if target == "name":
        name = " ".join(p for p in (row["first_name"], row["last_name"]) if p) or None
        return _plain(name, term.op, term.values)
    if kind in ("number", "text"):
        return _plain(row[target], term.op, term.values)
    if kind == "time":
        moment = term.values[0]
        if target == "last_activity":
            value = max(
                [row["created_at"], *record.moments, *(lead.received_at for lead in record.leads)]
            )
        elif target == "in_status":
            value = row["status_changed_at"] or row["created_at"]
        else:
            value = row[target]
        return bool(_OPS[term.op](value, moment))
    if kind == "lead":
        for lead in record.leads:
            if target == "source":
                candidates: list[Any] = [lead.source]
            else:
                candidates = [lead.context.get(k) for k in CONTEXT_KEYS[target]]
                candidates = [c if isinstance(c, str) else None for c in candidates]
            if any(_plain(c, term.op, term.values) for c in candidates):
                return True
        return False
    if kind == "flag":
        if target == "terminal":
            return row["status"] in {s.id for s in catalogue if s.terminal}
        if target in ("has_phone", "has_email"):
            return bool(row[target.removeprefix("has_")])
        if target == "has_issues":
            return record.open_issues
        return (row["custom"] or {}).get("is_test") is True
    return _custom(term, row["custom"] or {})


def _kind(value: Any) -> str | None:
    """The JSON type of a custom value, in the language's words."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "array"
    return None if value is None else "object"


def _same(value: Any, kind: str, wanted: Any) -> bool:
    return _kind(value) == kind and value == wanted


def _custom(term: Term, custom: dict[str, Any]) -> bool:
    value = custom.get(term.field.target)
    if term.op == "exists":
        return value is not None
    if term.op == "in":
        return any(_same(value, k, v) for k, v in zip(term.kinds, term.values, strict=True))
    kind, wanted, text = term.kinds[0], term.values[0], term.texts[0]
    if term.op == "=":
        return _same(value, kind, wanted)
    if term.op == "contains":
        if isinstance(value, str):
            return ascii_fold(text) in ascii_fold(value)
        if isinstance(value, list):
            return any(_same(v, kind, wanted) for v in value)
        return False
    return _kind(value) == kind and bool(_OPS[term.op](value, wanted))
