"""Running a segment against the store: count, a sorted page, a stream for exports.

The only module here that touches a Store. Every statement selects from `contacts`
with the compiled WHERE (live contacts only: merged tombstones never match), so the
database filters, sorts and pages; Python only formats the rows it is handed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select

from connector.model import STANDARD_FIELDS
from connector.segments.fields import resolve
from connector.segments.grammar import SegmentError, parse
from connector.segments.sql import Clause, Compiler
from connector.segments.tree import Resolved
from connector.statuses import Catalogue
from connector.store.engine import Store
from connector.store.tables import contacts

SORTS = ("id", "status", "score", "created", "updated", "in_status", "last_activity", "name",
         *STANDARD_FIELDS)  # fmt: skip
COLUMNS = ("id", "name", "status", "score", "created", "updated", "in_status",
           "last_activity", *STANDARD_FIELDS)  # fmt: skip
DEFAULT_COLUMNS = ("id", "name", "email", "phone", "owner", "status", "score", "created")
# Rows fetched at a time by exports: big enough to keep the driver busy, small enough
# that memory stays flat however many contacts match.
STREAM_BATCH = 2000


@dataclass(frozen=True, slots=True)
class Segment:
    """A parsed, resolved expression (None: every live contact)."""

    text: str | None
    expr: Resolved | None

    @classmethod
    def of(cls, text: str | None, catalogue: Catalogue, now: datetime | None = None) -> Segment:
        """`text` checked against `catalogue`; SegmentError points at the column."""
        if text is None or not text.strip():
            return cls(None, None)
        try:
            return cls(text, resolve(parse(text), catalogue, now or datetime.now(UTC)))
        except SegmentError as exc:
            raise SegmentError(exc.message, exc.column, text) from None

    def where(self, compiler: Compiler) -> Clause:
        live = contacts.c.merged_into.is_(None)
        return live if self.expr is None else live & compiler.where(self.expr)


def check_sort(spec: str | Sequence[str] | None) -> list[tuple[str, bool]]:
    """`status,-score,created` as (name, descending) pairs; ValueError names a bad one."""
    if spec is None:
        return []
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    found = []
    for raw in (n.strip() for n in names):
        if not raw:
            continue
        name = raw.removeprefix("-")
        if name not in SORTS:
            raise ValueError(f"cannot sort by `{name}` (sort by: {', '.join(SORTS)})")
        found.append((name, raw.startswith("-")))
    return found


def check_columns(spec: str | Sequence[str] | None) -> list[str]:
    """Column names for lists and exports: standard ones, or `custom.NAME`."""
    if spec is None:
        return list(DEFAULT_COLUMNS)
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec)]
    for name in names:
        if name not in COLUMNS and not (name.startswith("custom.") and len(name) > 7):
            raise ValueError(f"no column `{name}` (columns: {', '.join(COLUMNS)}, custom.NAME)")
    return [n for n in names if n]


def _statement(
    store: Store, segment: Segment, sort: Sequence[tuple[str, bool]], columns: Sequence[str]
) -> Select[Any]:
    compiler = Compiler(store.dialect, store.catalogue)
    picked: list[Any] = [contacts.c.id, contacts.c.status]
    wanted = set(columns)
    for name in STANDARD_FIELDS:
        if name in wanted or (name in ("first_name", "last_name") and "name" in wanted):
            picked.append(contacts.c[name])
    for name, col in (
        ("score", contacts.c.score),
        ("created", contacts.c.created_at),
        ("updated", contacts.c.updated_at),
        ("in_status", contacts.c.status_changed_at),
    ):
        if name in wanted:
            picked.append(col)
    if "in_status" in wanted and "created" not in wanted:
        picked.append(contacts.c.created_at)
    if any(c.startswith("custom.") for c in columns):
        picked.append(contacts.c.custom)
    if "last_activity" in wanted:
        picked.append(compiler.last_activity())
    order = []
    for name, descending in sort:
        key = compiler.sort_key(name)
        # A missing value sorts lowest (last in `-score`, "call the high scores first"):
        # SQLite's own order, and on PostgreSQL the order its score index is built in
        # (NULLS FIRST), which it reads forwards or backwards for either direction.
        ordered = key.desc() if descending else key.asc()
        if store.dialect == "postgresql":
            ordered = ordered.nulls_last() if descending else ordered.nulls_first()
        order.append(ordered)
    # A stable order for paging: ties broken by id (newest first when nothing is said).
    order.append(contacts.c.id.asc() if sort else contacts.c.id.desc())
    return select(*picked).where(segment.where(compiler)).order_by(*order)


def count(store: Store, segment: Segment) -> int:
    """How many live contacts are in the segment."""
    compiler = Compiler(store.dialect, store.catalogue)
    with store.reader.connect() as conn:
        stmt = select(func.count()).select_from(contacts).where(segment.where(compiler))
        return int(conn.execute(stmt).scalar_one())


def ids(store: Store, segment: Segment) -> Iterator[int]:
    """The ids of the segment's contacts in id order, streamed."""
    compiler = Compiler(store.dialect, store.catalogue)
    stmt = select(contacts.c.id).where(segment.where(compiler)).order_by(contacts.c.id)
    with store.reader.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=STREAM_BATCH).execute(stmt)
        for (contact_id,) in result:
            yield int(contact_id)


def stream(
    store: Store,
    segment: Segment,
    sort: Sequence[tuple[str, bool]] = (),
    columns: Sequence[str] = DEFAULT_COLUMNS,
    raw: bool = False,
) -> Iterator[dict[str, Any]]:
    """Every row of the segment as a dict of `columns` (see `values`). With `raw` the
    rows are the selected columns as they are (for hashing), not shaped."""
    if raw:
        stmt = _statement(store, segment, sort, columns)
        with store.reader.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=STREAM_BATCH)
            for found in result.execute(stmt):
                yield dict(found._mapping)
        return
    names = list(columns)
    for row in values(store, segment, sort, columns):
        yield dict(zip(names, row, strict=True))


def values(
    store: Store,
    segment: Segment,
    sort: Sequence[tuple[str, bool]] = (),
    columns: Sequence[str] = DEFAULT_COLUMNS,
) -> Iterator[list[Any]]:
    """Every row of the segment as a list of `columns`' values, fetched STREAM_BATCH at
    a time (a server-side cursor on PostgreSQL): memory stays flat from a hundred
    contacts to millions."""
    stmt = _statement(store, segment, sort, columns)
    with store.reader.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=STREAM_BATCH).execute(stmt)
        shaped = shaper(store, columns, list(result.keys()))
        for row in result:
            yield shaped(row)


def page(
    store: Store,
    segment: Segment,
    sort: Sequence[tuple[str, bool]] = (),
    columns: Sequence[str] = DEFAULT_COLUMNS,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """One page of the segment, sorted, as rows of the requested columns."""
    stmt = _statement(store, segment, sort, columns).limit(limit).offset(offset)
    names = list(columns)
    with store.reader.connect() as conn:
        result = conn.execute(stmt)
        shaped = shaper(store, columns, list(result.keys()))
        return [dict(zip(names, shaped(r), strict=True)) for r in result]


def shaper(store: Store, columns: Sequence[str], selected: list[str]) -> Callable[[Any], list[Any]]:
    """A function from a selected row (in `selected` order) to the values of the columns
    asked for (status by name, ISO times), each column's reader chosen once: an export
    calls it a million times."""
    name_of = store.catalogue.name
    at = {name: index for index, name in enumerate(selected)}
    readers = [_reader(name, name_of, at) for name in columns]

    def shaped(row: Any) -> list[Any]:
        return [read(row) for read in readers]

    return shaped


def _reader(
    name: str, name_of: Callable[[int | None], str], at: dict[str, int]
) -> Callable[[Any], Any]:
    if name == "name":
        first, last = at["first_name"], at["last_name"]
        return lambda r: " ".join(p for p in (r[first], r[last]) if p) or None
    if name == "status":
        i = at["status"]
        return lambda r: name_of(r[i])
    if name in ("created", "updated"):
        i = at[f"{name}_at"]
        return lambda r: _iso(r[i])
    if name == "in_status":
        changed, created = at["status_changed_at"], at["created_at"]
        return lambda r: _iso(r[changed] or r[created])
    if name == "last_activity":
        i = at["last_activity"]
        return lambda r: _iso(_moment(r[i]))
    if name.startswith("custom."):
        i, key = at["custom"], name[7:]
        return lambda r: (r[i] or {}).get(key)
    i = at[name]
    return lambda r: r[i]


def _moment(value: Any) -> datetime | None:
    # A computed max() over UTCDateTime columns comes back as SQLite's text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value if isinstance(value, datetime) else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
