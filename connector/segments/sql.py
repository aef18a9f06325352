"""Resolved terms to SQLAlchemy Core over the store's tables, run in the database
(text comparisons in dialect.py, custom attributes in custom.py).

Nothing is filtered in Python. Every term is written so that it is true or false, never
NULL (`score >= 70` is `score IS NOT NULL AND score >= 70`), which keeps `not` meaning
what the Python evaluator means. Custom attributes and lead context are JSON: each
dialect's own functions read them, checking the JSON type first, so a number compares
as a number only with numbers (a text "1500" is not 1500, as the mapping typed it).
Text orders by code point on both (PostgreSQL's COLLATE "C" = SQLite's BINARY), and
`contains` ignores ASCII case on both (SQLite's lower() folds only ASCII; PostgreSQL
gets the same with translate()).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    Text,
    and_,
    case,
    exists,
    false,
    func,
    not_,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB

from connector.segments.custom import CustomAttributes, path
from connector.segments.dialect import OPS, Clause, ascii_fold
from connector.segments.tree import And, Not, Or, Resolved, Term
from connector.statuses import Catalogue
from connector.store.tables import contacts, interactions, leads, quarantine, status_history

# A lead's context keys for each lead field: the id and the name both match.
CONTEXT_KEYS = {
    "form": ("form_id", "form_name"),
    "campaign": ("campaign_id", "campaign_name"),
    "adset": ("adset_id", "adset_name"),
    "ad": ("ad_id", "ad_name"),
    "platform": ("platform",),
}


class Compiler(CustomAttributes):
    """Compiles resolved expressions for one dialect (`sqlite` or `postgresql`)."""

    def __init__(self, dialect: str, catalogue: Catalogue) -> None:
        super().__init__(dialect)
        self.catalogue = catalogue

    def where(self, expr: Resolved) -> Clause:
        if isinstance(expr, And):
            return and_(*(self.where(e) for e in expr.items))
        if isinstance(expr, Or):
            return or_(*(self.where(e) for e in expr.items))
        if isinstance(expr, Not):
            return not_(self.where(expr.item))
        assert isinstance(expr, Term)
        kind = expr.field.kind
        method: Callable[[Term], Clause] = getattr(self, f"_{kind}")
        return method(expr)

    # -- fields ---------------------------------------------------------------------

    def _status(self, term: Term) -> Clause:
        return contacts.c.status.in_(term.values) if term.values else false()

    def _number(self, term: Term) -> Clause:
        return self._compare(contacts.c[term.field.target], term.op, term.values, ordered=False)

    def _text(self, term: Term) -> Clause:
        target = term.field.target
        col = full_name() if target == "name" else contacts.c[target]
        return self._compare(col, term.op, term.values, ordered=True)

    def _time(self, term: Term) -> Clause:
        op, moment = term.op, term.values[0]
        target = term.field.target
        if target == "last_activity":
            # The latest of several moments is after T when any of them is; it is
            # before T when none of them is at or after T.
            if op in (">", ">="):
                return self._any_activity(op, moment)
            return not_(self._any_activity(">=" if op == "<" else ">", moment))
        if target == "in_status":
            col: Any = func.coalesce(contacts.c.status_changed_at, contacts.c.created_at)
        else:
            col = contacts.c[target]
        return OPS[op](col, moment)

    def _any_activity(self, op: str, moment: Any) -> Clause:
        cid = contacts.c.id
        compare = OPS[op]
        return or_(
            compare(contacts.c.created_at, moment),
            exists().where(
                interactions.c.contact_id == cid, compare(interactions.c.occurred_at, moment)
            ),
            exists().where(
                status_history.c.contact_id == cid, compare(status_history.c.at, moment)
            ),
            exists().where(leads.c.contact_id == cid, compare(leads.c.received_at, moment)),
        )

    def _lead(self, term: Term) -> Clause:
        target = term.field.target
        if target == "source":
            inner = self._compare(leads.c.source, term.op, term.values, ordered=False)
        else:
            inner = or_(
                *(
                    self._compare(self._context_text(key), term.op, term.values, ordered=False)
                    for key in CONTEXT_KEYS[target]
                )
            )
        return exists().where(leads.c.contact_id == contacts.c.id, inner)

    def _context_text(self, key: str) -> Any:
        """A lead context value when it is JSON text, else NULL (numbers and yes/no do
        not read as text the same way in both databases)."""
        if self.pg:
            node = leads.c.context.op("->", return_type=JSONB)(key)
            text = leads.c.context.op("->>", return_type=Text)(key)
            return case((func.jsonb_typeof(node) == "string", text))
        where = path(key)
        return case(
            (
                func.json_type(leads.c.context, where) == "text",
                func.json_extract(leads.c.context, where),
            )
        )

    def _flag(self, term: Term) -> Clause:
        target = term.field.target
        if target == "terminal":
            ids = sorted(s.id for s in self.catalogue if s.terminal)
            return contacts.c.status.in_(ids) if ids else false()
        if target in ("has_phone", "has_email"):
            col = contacts.c[target.removeprefix("has_")]
            return and_(col.is_not(None), col != "")
        if target == "has_issues":
            return exists().where(
                quarantine.c.contact_id == contacts.c.id,
                quarantine.c.kind == "field",
                quarantine.c.resolved_at.is_(None),
            )
        assert target == "is_test"
        return self._custom_equals("is_test", "bool", True)

    # -- sorting --------------------------------------------------------------------

    def sort_key(self, name: str) -> Any:
        """The expression a sort name orders by (see query.SORTS)."""
        if name == "status":
            ranks = {s.id: s.rank for s in self.catalogue}
            return case(ranks, value=contacts.c.status, else_=-1)
        if name == "last_activity":
            return self.last_activity()
        if name == "in_status":
            return func.coalesce(contacts.c.status_changed_at, contacts.c.created_at)
        if name == "name":
            return self._ordered(
                func.coalesce(contacts.c.last_name, "")
                + " "
                + func.coalesce(contacts.c.first_name, "")
            )
        column = {"created": "created_at", "updated": "updated_at"}.get(name, name)
        col = contacts.c[column]
        return self._ordered(col) if isinstance(col.type, String) else col

    def last_activity(self) -> Any:
        cid = contacts.c.id
        created = contacts.c.created_at
        latest = [
            select(func.max(interactions.c.occurred_at)).where(interactions.c.contact_id == cid),
            select(func.max(status_history.c.at)).where(status_history.c.contact_id == cid),
            select(func.max(leads.c.received_at)).where(leads.c.contact_id == cid),
        ]
        parts = [func.coalesce(q.scalar_subquery(), created) for q in latest]
        greatest = func.greatest if self.pg else func.max
        return greatest(created, *parts).label("last_activity")


def full_name() -> ColumnElement[Any]:
    """First and last name as shown ("Ann Lee", "Lee"), NULL when neither is there."""
    joined = (
        func.coalesce(contacts.c.first_name, "") + " " + func.coalesce(contacts.c.last_name, "")
    )
    return func.nullif(func.trim(joined), "")


__all__ = ["CONTEXT_KEYS", "Clause", "Compiler", "ascii_fold"]
