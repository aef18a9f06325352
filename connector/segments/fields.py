"""What each name in an expression means: the field catalogue, and `resolve`, which
turns a syntax tree into terms with their values read the way the field reads them
(status names to ids through the deployment's catalogue, durations to moments).

Both backends work from the resolved terms: the SQL compiler (sql.py) and the plain
Python evaluator (oracle.py) that the property test holds it to. Every term is
two-valued (true or false, never SQL's unknown): `!=` and `not in` are `not (=)` and
`not (in)`, so a contact with no city is one whose city is not Warsaw.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from connector.model import STANDARD_FIELDS
from connector.segments.grammar import SegmentError
from connector.segments.tree import (
    And,
    Condition,
    Expr,
    Field,
    Not,
    Op,
    Or,
    Plain,
    Resolved,
    Term,
    Value,
)
from connector.statuses import Catalogue, UnknownStatusError


def _fields() -> dict[str, Field]:
    found = {
        "status": Field("status", "status", "status", "status by name or id; < > by rank"),
        "score": Field("score", "number", "score", "predicted score"),
        "id": Field("id", "number", "id", "contact id"),
        "created": Field("created", "time", "created_at", "when the contact was created"),
        "updated": Field("updated", "time", "updated_at", "when the contact last changed"),
        "in_status": Field(
            "in_status", "time", "in_status", "time in the current status (`in_status > 14d`)"
        ),
        "last_activity": Field(
            "last_activity",
            "time",
            "last_activity",
            "latest of creation, lead, interaction and status change",
        ),
        "source": Field("source", "lead", "source", "a lead's source"),
        "form": Field("form", "lead", "form", "a lead's form (id or name)"),
        "campaign": Field("campaign", "lead", "campaign", "a lead's campaign (id or name)"),
        "adset": Field("adset", "lead", "adset", "a lead's ad set (id or name)"),
        "ad": Field("ad", "lead", "ad", "a lead's ad (id or name)"),
        "platform": Field("platform", "lead", "platform", "a lead's platform (fb, ig)"),
        "terminal": Field("terminal", "flag", "terminal", "in a terminal status"),
        "has_phone": Field("has_phone", "flag", "has_phone", "has a valid phone"),
        "has_email": Field("has_email", "flag", "has_email", "has a valid email"),
        "has_issues": Field("has_issues", "flag", "has_issues", "has open field issues"),
        "is_test": Field("is_test", "flag", "is_test", "a test lead (Meta's testing tool)"),
    }
    found["name"] = Field("name", "text", "name", "first and last name, as shown")
    for name in STANDARD_FIELDS:
        found[name] = Field(name, "text", name, f"the contact's {name.replace('_', ' ')}")
    return found


FIELDS: dict[str, Field] = _fields()
ALIASES = {
    "created_at": "created",
    "updated_at": "updated",
    "ad_set": "adset",
    "time_in_status": "in_status",
    "valid_phone": "has_phone",
    "valid_email": "has_email",
    "test": "is_test",
}
# Reserved for the next issue; an honest error instead of a stub that pretends.
NOT_YET = {"audience": "audiences are not built yet (member of audience X comes with them)"}

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ORDER = ("<", "<=", ">", ">=")


def field_for(name: str, column: int) -> Field:
    """The field `name` stands for: a standard one, `custom.x`, or a bare custom name."""
    lowered = name.lower()
    if lowered.startswith("custom."):
        key = name.split(".", 1)[1]
        return Field(key, "custom", key, "custom attribute")
    if "." in name:
        raise SegmentError(f"unknown field `{name}` (only custom.NAME is dotted)", column)
    if lowered in NOT_YET:
        raise SegmentError(NOT_YET[lowered], column)
    lowered = ALIASES.get(lowered, lowered)
    if lowered in FIELDS:
        return FIELDS[lowered]
    return Field(name, "custom", name, "custom attribute")


def resolve(expr: Expr, catalogue: Catalogue, now: datetime) -> Resolved:
    """`expr` with every name and value given its meaning; SegmentError (with the
    column, without the text) for a condition that means nothing."""
    if isinstance(expr, And):
        return And(tuple(resolve(e, catalogue, now) for e in expr.items))
    if isinstance(expr, Or):
        return Or(tuple(resolve(e, catalogue, now) for e in expr.items))
    if isinstance(expr, Not):
        return Not(resolve(expr.item, catalogue, now))
    assert isinstance(expr, Condition)
    return _condition(expr, catalogue, now)


def _condition(cond: Condition, catalogue: Catalogue, now: datetime) -> Resolved:
    field = field_for(cond.name, cond.column)
    op = cond.op
    if op == "!=":
        return Not(_condition(Condition(cond.name, "=", cond.values, cond.column), catalogue, now))
    if op == "notin":
        return Not(_condition(Condition(cond.name, "in", cond.values, cond.column), catalogue, now))
    if op == "between":
        low, high = cond.values
        return And(
            (
                _condition(Condition(cond.name, ">=", (low,), cond.column), catalogue, now),
                _condition(Condition(cond.name, "<=", (high,), cond.column), catalogue, now),
            )
        )
    if field.kind == "flag":
        return _flag(field, cond)
    if op == "flag":
        raise SegmentError(
            f"`{cond.name}` alone is not a condition: compare it (`{cond.name} = ...`) or "
            f"ask `{cond.name} exists`",
            cond.column,
        )
    if field.kind == "status":
        return _status(field, cond, catalogue)
    if field.kind == "time":
        return _time(field, cond, now)
    if op == "exists":
        return Term(field, "exists", ())
    if op == "contains" and field.kind == "number":
        raise SegmentError(f"`contains` is for text and lists, not {field.name}", cond.column)
    if op in _ORDER and field.kind == "lead":
        raise SegmentError(f"{field.name} takes = != in contains exists", cond.column)
    if field.kind == "custom":
        for v in cond.values:
            if v.kind == "duration":
                raise SegmentError(
                    "a duration compares only created, updated, in_status, last_activity",
                    v.column,
                )
            if v.kind == "bool" and op in _ORDER:
                raise SegmentError("yes/no values cannot be ordered", v.column)
        kinds = tuple("text" if v.kind == "date" else _custom_kind(v) for v in cond.values)
        values = tuple(_plain(v) for v in cond.values)
        return Term(
            field,
            _op(op),
            values,
            kinds,
            tuple(v.text for v in cond.values),
        )
    if field.kind == "number":
        for v in cond.values:
            if v.kind != "number":
                raise SegmentError(f"{field.name} compares with numbers, not `{v.text}`", v.column)
        return Term(field, _op(op), tuple(_plain(v) for v in cond.values))
    # Text columns and lead fields read every literal as the text it was written as.
    return Term(field, _op(op), tuple(v.text for v in cond.values))


def _plain(v: Value) -> Plain:
    """A custom or number literal's value: dates compare as the ISO text they are."""
    if v.kind in ("date", "string") or isinstance(v.value, timedelta):
        return v.text
    return v.value


def _custom_kind(v: Value) -> str:
    return {"number": "number", "bool": "bool"}.get(v.kind, "text")


def _op(op: str) -> Op:
    assert op in ("=", "<", "<=", ">", ">=", "in", "contains"), op
    return op  # type: ignore[return-value]


def _flag(field: Field, cond: Condition) -> Resolved:
    term = Term(field, "true", ())
    if cond.op == "flag":
        return term
    if cond.op == "=" and cond.values[0].kind == "bool":
        return term if cond.values[0].value else Not(term)
    raise SegmentError(
        f"{field.name} is yes or no: `{field.name}` or `{field.name} = no`", cond.column
    )


def _status(field: Field, cond: Condition, catalogue: Catalogue) -> Resolved:
    if cond.op in ("contains", "exists"):
        raise SegmentError(f"status takes = != < <= > >= in, not {cond.op}", cond.column)
    named = []
    for v in cond.values:
        try:
            named.append(catalogue.resolve(v.text))
        except UnknownStatusError as exc:
            raise SegmentError(str(exc), v.column) from None
    if cond.op in ("=", "in"):
        ids = {s.id for s in named}
    else:
        rank = named[0].rank
        compare = {
            "<": rank.__gt__,
            "<=": rank.__ge__,
            ">": rank.__lt__,
            ">=": rank.__le__,
        }[cond.op]
        ids = {s.id for s in catalogue if compare(s.rank)}
    return Term(field, "in", tuple(sorted(ids)))


def _time(field: Field, cond: Condition, now: datetime) -> Resolved:
    if cond.op not in _ORDER:
        raise SegmentError(
            f"{field.name} takes < <= > >= with a duration (30d: age) or a date", cond.column
        )
    v = cond.values[0]
    if v.kind == "duration":
        # An age: `created < 30d` is "created less than 30 days ago", a later moment.
        assert isinstance(v.value, timedelta)
        return Term(field, _op(_FLIP[cond.op]), (now - v.value,))
    if v.kind == "date":
        assert isinstance(v.value, datetime)
        return Term(field, _op(cond.op), (v.value,))
    raise SegmentError(
        f"{field.name} compares with a duration (30d, 12h, 2w) or a date (2026-01-31), "
        f"not `{v.text}`",
        v.column,
    )
