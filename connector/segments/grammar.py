"""The segment language's grammar and parser: text in, a small syntax tree out.

One grammar serves the YAML (`segments:` / `views:`) and the command line
(`--where 'status >= Qualified and source = facebook and score >= 70'`). Lark parses it
(LALR, so a syntax error names the column where the text stops making sense); this
module turns lark's tree into the frozen dataclasses below, which the field catalogue
(connector/segments/fields.py) gives meaning to.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import lark

from connector.segments.tree import And, Condition, Expr, Not, Or, Value

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr | or_expr _OR and_expr -> or_
?and_expr: not_expr | and_expr _AND not_expr -> and_
?not_expr: _NOT not_expr -> not_ | atom
?atom: "(" or_expr ")" | condition
condition: name OP value -> compare
    | name _IN "(" values ")" -> in_
    | name _NOT _IN "(" values ")" -> not_in
    | name _CONTAINS value -> contains
    | name _EXISTS -> exists
    | name _BETWEEN value _AND value -> between
    | name -> flag
values: value ("," value)*
name: NAME ("." NAME)?
value: STRING | BARE
OP: "=" | "!=" | "<=" | ">=" | "<" | ">"
_AND: "and"i
_OR: "or"i
_NOT: "not"i
_IN: "in"i
_CONTAINS: "contains"i
_EXISTS: "exists"i
_BETWEEN: "between"i
NAME: /[^\W\d]\w*/
STRING: /"[^"]*"/ | /'[^']*'/
BARE: /[^\s(),'"=!<>]+/
%ignore /\s+/
"""

KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "exists", "between"})

# How lark's terminal names read to a person in "expected ..." messages.
_WORDS = {
    "OP": "a comparison (= != < <= > >=)",
    "STRING": "a value",
    "BARE": "a value",
    "NAME": "a field name",
    "LPAR": "(",
    "RPAR": ")",
    "COMMA": ",",
    "DOT": ".",
    "_AND": "and",
    "_OR": "or",
    "_NOT": "not",
    "_IN": "in",
    "_CONTAINS": "contains",
    "_EXISTS": "exists",
    "_BETWEEN": "between",
    "$END": "the end",
}


class SegmentError(ValueError):
    """An expression that cannot be used; `column` (1-based) is where the problem is."""

    def __init__(self, message: str, column: int, text: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.text = text

    def __str__(self) -> str:
        return f"column {self.column}: {self.message}"

    def pointed(self) -> str:
        """The message with the expression under it and a caret at the column."""
        if not self.text:
            return str(self)
        return f"{self}\n  {self.text}\n  {' ' * (self.column - 1)}^"


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DURATION = re.compile(r"(\d+)([mhdw])", re.IGNORECASE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_YES = {"true", "yes"}
_NO = {"false", "no"}


def read_value(text: str, column: int, quoted: bool) -> Value:
    """A literal's kind and value: quoted text stays text; a bare word is a number, a
    duration, a date, a yes/no, or else text."""
    if quoted:
        return Value("string", text, text, column)
    lowered = text.lower()
    if _NUMBER.fullmatch(text):
        return Value("number", text, float(text), column)
    if m := _DURATION.fullmatch(text):
        unit = _UNITS[m.group(2).lower()]
        return Value("duration", text, timedelta(**{unit: int(m.group(1))}), column)
    if _DATE.fullmatch(text) or _DATETIME.fullmatch(text):
        try:
            moment = _moment(text)
        except ValueError:
            raise SegmentError(f"`{text}` is not a date", column) from None
        return Value("date", text, moment, column)
    if lowered in _YES or lowered in _NO:
        return Value("bool", text, lowered in _YES, column)
    return Value("string", text, text, column)


def _moment(text: str) -> datetime:
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@cache
def _parser() -> lark.Lark:
    return lark.Lark(GRAMMAR, parser="lalr", propagate_positions=True)


class _Build(lark.Transformer[lark.Token, Expr]):
    """Lark's tree to the dataclasses, flattening nested and/or."""

    def or_(self, items: list[Expr]) -> Expr:
        return Or(
            tuple(i for item in items for i in (item.items if isinstance(item, Or) else (item,)))
        )

    def and_(self, items: list[Expr]) -> Expr:
        return And(
            tuple(i for item in items for i in (item.items if isinstance(item, And) else (item,)))
        )

    def not_(self, items: list[Expr]) -> Expr:
        return Not(items[0])

    def name(self, tokens: list[lark.Token]) -> tuple[str, int]:
        for token in tokens:
            if str(token).lower() in KEYWORDS:
                # `a = 1 and and`: the lexer took the second `and` for a field name.
                raise SegmentError(
                    f"unexpected `{token}`; expected a field name", int(token.column or 1)
                )
        return ".".join(str(t) for t in tokens), int(tokens[0].column or 1)

    def value(self, tokens: list[lark.Token]) -> Value:
        token = tokens[0]
        column = int(token.column or 1)
        if token.type == "STRING":
            return read_value(str(token)[1:-1], column, quoted=True)
        return read_value(str(token), column, quoted=False)

    def values(self, items: list[Value]) -> tuple[Value, ...]:
        return tuple(items)

    def compare(self, items: list[Any]) -> Condition:
        (name, column), op, value = items
        assert isinstance(value, Value)
        return Condition(str(name), str(op), (value,), int(column))

    def _cond(self, op: str, items: list[Any]) -> Condition:
        (name, column), *rest = items
        values: list[Value] = []
        for item in rest:
            values.extend(item if isinstance(item, tuple) else (item,))
        return Condition(str(name), op, tuple(values), int(column))

    def in_(self, items: list[Any]) -> Condition:
        return self._cond("in", items)

    def not_in(self, items: list[Any]) -> Condition:
        return self._cond("notin", items)

    def contains(self, items: list[Any]) -> Condition:
        return self._cond("contains", items)

    def exists(self, items: list[Any]) -> Condition:
        return self._cond("exists", items)

    def between(self, items: list[Any]) -> Condition:
        return self._cond("between", items)

    def flag(self, items: list[Any]) -> Condition:
        return self._cond("flag", items)


def parse(text: str) -> Expr:
    """The syntax tree of `text`, or SegmentError naming the column where it goes wrong."""
    if not text.strip():
        raise SegmentError("the expression is empty", 1, text)
    try:
        tree = _parser().parse(text)
    except lark.UnexpectedCharacters as exc:
        raise SegmentError(
            f"unexpected `{text[exc.pos_in_stream or 0]}`", exc.column, text
        ) from None
    except lark.UnexpectedToken as exc:
        expected = sorted({_WORDS.get(t, t) for t in exc.expected if t in _WORDS})
        token = exc.token
        if token.type == "$END":
            got, column = "the end", len(text) + 1
        else:
            got, column = f"`{token}`", int(token.column or 1)
        hint = ""
        if token.type in ("BARE", "NAME") and "a value" not in expected:
            hint = " (quote a value that has spaces: 'Called twice')"
        raise SegmentError(
            f"unexpected {got}; expected {' or '.join(expected)}{hint}", column, text
        ) from None
    except lark.UnexpectedInput as exc:
        raise SegmentError("cannot read the expression", exc.column, text) from None
    try:
        built = _Build().transform(tree)
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, SegmentError):
            raise SegmentError(exc.orig_exc.message, exc.orig_exc.column, text) from None
        raise
    assert isinstance(built, (Condition, And, Or, Not))
    return built
