"""Custom attributes in SQL: each dialect's JSON functions, the JSON type checked first.

A number compares only with numbers and text only with text, as the mapping typed them
(a text "1500" is not 1500); yes/no values are JSON booleans; `contains` is a substring
of text or an element of a list.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    Text,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB

from connector.segments.dialect import OPS, Clause, Dialect
from connector.segments.tree import Term
from connector.store.tables import contacts


def path(key: str) -> str:
    return '$."' + key.replace('"', "") + '"'


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


class CustomAttributes(Dialect):
    """Terms on `contacts.custom`, for one dialect."""

    def _jtype(self, key: str) -> ColumnElement[Any]:
        if self.pg:
            return func.coalesce(func.jsonb_typeof(self._node(key)), "")
        return func.coalesce(func.json_type(contacts.c.custom, path(key)), "")

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
            return func.json_extract(contacts.c.custom, path(key))
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
        return and_(self._is(key, kind), OPS[term.op](target, value))

    def _has_element(self, key: str, kind: str, value: Any) -> Clause:
        if self.pg:
            return self._node(key).op("@>", return_type=Boolean)(
                func.jsonb_build_array(literal(value))
            )
        each = func.json_each(contacts.c.custom, path(key)).table_valued("type", "value")
        sqlite = _JSON_TYPES["sqlite"]
        types = sqlite["bool_" + str(value).lower()] if kind == "bool" else sqlite[kind]
        match: Clause = each.c.type.in_(types)
        if kind != "bool":
            match = and_(match, each.c.value == value)
        return exists(select(literal(1)).select_from(each).where(match))
