"""Resolved terms to SQLAlchemy Core over the store's tables, run in the database.

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

import string
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    String,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB

from connector.segments.tree import And, Not, Or, Resolved, Term
from connector.statuses import Catalogue
from connector.store.tables import contacts, interactions, leads, quarantine, status_history

Clause = ColumnElement[bool]
UPPER, LOWER = string.ascii_uppercase, string.ascii_lowercase
# A lead's context keys for each lead field: the id and the name both match.
CONTEXT_KEYS = {
    "form": ("form_id", "form_name"),
    "campaign": ("campaign_id", "campaign_name"),
    "adset": ("adset_id", "adset_name"),
    "ad": ("ad_id", "ad_name"),
    "platform": ("platform",),
}


def ascii_fold(text: str) -> str:
    """ASCII letters lowered, nothing else touched: what both databases do the same."""
    return text.translate(str.maketrans(UPPER, LOWER))


class Compiler:
    """Compiles resolved expressions for one dialect (`sqlite` or `postgresql`)."""

    def __init__(self, dialect: str, catalogue: Catalogue) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"segments run on sqlite or postgresql, not {dialect}")
        self.pg = dialect == "postgresql"
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

    # -- text helpers ---------------------------------------------------------------

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
        return and_(present, _OPS[op](target, values[0]))

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
        return _OPS[op](col, moment)

    def _any_activity(self, op: str, moment: Any) -> Clause:
        cid = contacts.c.id
        compare = _OPS[op]
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
        path = _path(key)
        return case(
            (
                func.json_type(leads.c.context, path) == "text",
                func.json_extract(leads.c.context, path),
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

    # -- custom attributes (JSON) ---------------------------------------------------

    def _jtype(self, key: str) -> ColumnElement[Any]:
        if self.pg:
            return func.coalesce(func.jsonb_typeof(self._node(key)), "")
        return func.coalesce(func.json_type(contacts.c.custom, _path(key)), "")

    def _node(self, key: str) -> ColumnElement[Any]:
        return contacts.c.custom.op("->", return_type=JSONB)(key)

    def _is(self, key: str, kind: str) -> Clause:
        names = _JSON_TYPES["pg" if self.pg else "sqlite"][kind]
        return self._jtype(key).in_(names)

    def _typed(self, key: str, kind: str) -> Any:
        """The attribute read as `kind` (number or text), NULL when it is another type.
        CASE, not AND: PostgreSQL may evaluate an AND's sides in either order, and a
        cast of text to a number would fail."""
        if not self.pg:
            return func.json_extract(contacts.c.custom, _path(key))
        text = contacts.c.custom.op("->>", return_type=Text)(key)
        value = cast(text, Float) if kind == "number" else text
        return case((self._is(key, kind), value))

    def _custom_equals(self, key: str, kind: str, value: Any) -> Clause:
        if kind == "bool":
            word = "true" if value else "false"
            if self.pg:
                return self._jtype(key).in_(["boolean"]) & (
                    self._node(key) == cast(literal(word), JSONB)
                )
            return self._jtype(key) == word
        return and_(self._is(key, kind), self._typed(key, kind) == value)

    def _custom(self, term: Term) -> Clause:
        key = term.field.target
        if term.op == "exists":
            return self._jtype(key).not_in(["", "null"])
        if term.op == "in":
            return or_(
                *(
                    self._custom_equals(key, k, v)
                    for k, v in zip(term.kinds, term.values, strict=True)
                )
            )
        kind, value, text = term.kinds[0], term.values[0], term.texts[0]
        if term.op == "=":
            return self._custom_equals(key, kind, value)
        if term.op == "contains":
            return or_(
                and_(self._is(key, "text"), self._contains(self._typed(key, "text"), text)),
                and_(self._is(key, "array"), self._has_element(key, kind, value)),
            )
        target = self._typed(key, kind)
        if kind == "text":
            target = self._ordered(target)
        return and_(self._is(key, kind), _OPS[term.op](target, value))

    def _has_element(self, key: str, kind: str, value: Any) -> Clause:
        if self.pg:
            return self._node(key).op("@>", return_type=Boolean)(
                func.jsonb_build_array(literal(value))
            )
        each = func.json_each(contacts.c.custom, _path(key)).table_valued("type", "value")
        sqlite = _JSON_TYPES["sqlite"]
        types = sqlite["bool_" + str(value).lower()] if kind == "bool" else sqlite[kind]
        match: Clause = each.c.type.in_(types)
        if kind != "bool":
            match = and_(match, each.c.value == value)
        return exists(select(literal(1)).select_from(each).where(match))

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


def _path(key: str) -> str:
    return '$."' + key.replace('"', "") + '"'


_OPS: dict[str, Callable[[Any, Any], Clause]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}

_JSON_TYPES = {
    "pg": {"number": ["number"], "text": ["string"], "array": ["array"], "bool": ["boolean"]},
    "sqlite": {
        "number": ["integer", "real"],
        "text": ["text"],
        "array": ["array"],
        "bool_true": ["true"],
        "bool_false": ["false"],
    },
}
