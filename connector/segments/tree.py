"""The segment language's trees: what the parser builds (conditions as written) and
what the field catalogue resolves them to (terms). And/Or/Not hold either."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

ValueKind = Literal["string", "number", "duration", "date", "bool"]


@dataclass(frozen=True, slots=True)
class Value:
    """One literal as written: `kind` says how it reads (a bare `70` is a number, `30d` a
    duration, `2026-01-01` a date, `yes`/`true` a yes; quoted text is always text)."""

    kind: ValueKind
    text: str
    value: str | float | timedelta | datetime | bool
    column: int


@dataclass(frozen=True, slots=True)
class Condition:
    """`name op values` as written: op is one of = != < <= > >= in notin contains exists
    between flag; `name` is dotted when written so (`custom.budget`)."""

    name: str
    op: str
    values: tuple[Value, ...]
    column: int


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Kind = Literal["status", "number", "text", "time", "lead", "flag", "custom"]
Op = Literal["=", "<", "<=", ">", ">=", "in", "contains", "exists", "true"]
Plain = str | float | bool | datetime


@dataclass(frozen=True, slots=True)
class Field:
    """A name the language knows: `kind` says which operators it takes and how its
    values read; `target` is the column, lead context key or flag it stands for."""

    name: str
    kind: Kind
    target: str
    help: str


@dataclass(frozen=True, slots=True)
class Term:
    """One resolved condition. `values` are read for the field: status ids (op `in`),
    floats, text, moments (time fields, durations already turned into moments) or, for
    custom attributes, each literal's kind with its value and text."""

    field: Field
    op: Op
    values: tuple[Plain, ...]
    kinds: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()


Expr = Condition | Term | And | Or | Not
# A resolved tree holds only terms under its And/Or/Not (fields.resolve).
Resolved = Expr
