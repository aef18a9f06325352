"""Bulk statements for the ingest hot path, below SQLAlchemy's per-row machinery.

A batch of 5,000 leads writes ~15,000 rows. Through SQLAlchemy Core's executemany
that costs ~40 µs a row on SQLite, and on PostgreSQL the multi-row VALUES statements
that stand in for executemany-with-RETURNING cost more to parse (in psycopg) than to
run. Here rows go to the driver directly: `executemany` on sqlite3 (~2 µs a row) and
`COPY … FROM STDIN` on PostgreSQL. Values still pass through each column's SQLAlchemy
bind processor, so what lands is exactly what Core would have written. Unique and
foreign-key violations still raise, wrapped as SQLAlchemy's IntegrityError, so the
pipeline's retry on a lost race works the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSON as JSON_PG
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from connector.store.engine import dump_json


def _processors(conn: Connection, table: Table, cols: Sequence[str]) -> list[Any]:
    dialect = conn.dialect
    serialize = dialect._json_serializer or dump_json

    def json_text(value: Any) -> Any:
        if value is None:
            return None
        # Most contacts' and leads' custom and context maps are empty: no call for them.
        if value.__class__ is dict and not value:
            return "{}"
        return serialize(value)

    # JSON goes as text on both backends (COPY parses it into jsonb server-side), which
    # skips Core's JSON wrapper, a third of the write path's Python time. Every other
    # column gets the processor Core itself applies (TypeDecorators included).
    return [
        json_text
        if isinstance(table.c[c].type, JSON)
        else table.c[c].type._cached_bind_processor(dialect)
        for c in cols
    ]


def _convert_columns(values: Sequence[Sequence[Any]], procs: list[tuple[int, Any]]) -> Any:
    # Column by column: each distinct object is converted once (a batch stamps every
    # row with the same `now` and shares context dicts) and the per-row work is done by
    # C loops (zip, map). Distinct by id() because dicts are unhashable; the objects
    # are held by `values`, so ids cannot be reused meanwhile.
    columns: list[Any] = list(zip(*values, strict=True))
    for i, process in procs:
        column = columns[i]
        # dict(zip(...)) finds the distinct objects in C: a comprehension over every
        # row of every converted column was ~2% of the writer.
        distinct = dict(zip(map(id, column), column, strict=True))
        converted = {k: process(v) for k, v in distinct.items()}
        columns[i] = map(converted.__getitem__, map(id, column))
    return list(zip(*columns, strict=True))


def _datetimes_as_copy_text(
    raw: Any, table: Table, cols: Sequence[str], procs: list[tuple[int, Any]]
) -> list[tuple[int, Any]]:
    """PostgreSQL COPY: datetime columns' values become the text psycopg's own dumper
    writes for them, once per distinct object (`_convert_columns`), instead of once a
    row inside COPY's row formatting: there a datetime cost ~4.5 µs (psycopg picks its
    dumper per value) against ~0.5 µs for the same text, and a batch writes ~30,000 of
    them (the batch's `now` on every row of four tables). The server reads the same
    characters, so the same value lands."""
    from psycopg.adapt import PyFormat, Transformer

    transformer = Transformer.from_context(raw)

    def as_text(process: Any) -> Any:
        def convert(value: Any) -> Any:
            out = process(value)
            if out.__class__ is not datetime:
                return out
            dumped = transformer.get_dumper(out, PyFormat.TEXT).dump(out)
            assert dumped is not None  # only None dumps to None
            return bytes(dumped).decode()

        return convert

    return [(i, as_text(p) if _is_datetime(table.c[cols[i]]) else p) for i, p in procs]


def _is_datetime(column: Column[Any]) -> bool:
    """A DateTime column, or a TypeDecorator over one (UTCDateTime)."""
    return isinstance(getattr(column.type, "impl", column.type), DateTime)


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT rows (all with the same keys) in the connection's transaction."""
    if not rows:
        return
    cols = list(rows[0])
    pick = itemgetter(*cols)
    single = len(cols) == 1  # itemgetter of one key returns the value, not a tuple
    insert_values(
        conn, table, cols, [(pick(r),) for r in rows] if single else list(map(pick, rows))
    )


def insert_values(
    conn: Connection, table: Table, cols: Sequence[str], values: Sequence[Sequence[Any]]
) -> None:
    """INSERT rows given as value tuples in the order of `cols` (no dict per row)."""
    if not values:
        return
    procs = [(i, p) for i, p in enumerate(_processors(conn, table, cols)) if p]
    raw = conn.connection.driver_connection
    assert raw is not None
    if procs and conn.dialect.name == "postgresql":
        procs = _datetimes_as_copy_text(raw, table, cols, procs)
    if procs:
        values = _convert_columns(values, procs)
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in cols)
    try:
        if conn.dialect.name == "postgresql":
            copy_sql = f"COPY {quote(table.name)} ({names}) FROM STDIN"
            with raw.cursor() as cur, cur.copy(copy_sql) as copy:
                for row in values:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in cols)
            cur = raw.cursor()
            try:
                cur.executemany(
                    f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})", values
                )
            finally:
                cur.close()
    except conn.dialect.loaded_dbapi.IntegrityError as exc:
        raise IntegrityError(f"bulk insert into {table.name}", None, exc) from exc


def update_values(
    conn: Connection, table: Table, cols: Sequence[str], values: Sequence[Sequence[Any]]
) -> None:
    """UPDATE rows by id: each value tuple is (id, *values in the order of `cols`).

    What Core's executemany of `UPDATE … WHERE id = :id` writes, for a fraction of the
    cost: SQLite runs one cached statement over the converted tuples (executemany);
    PostgreSQL gets ONE statement for the whole batch, the rows as one JSON array that
    `json_populate_recordset` turns into rows of the table's own type (so every value
    is parsed as its column's type, JSON columns from nested JSON), joined on id.
    psycopg's executemany sent one prepared statement a row: ~800 a batch for the
    contacts a batch updates. Rows are never written to ids that are not there, and
    errors raise like Core's (IntegrityError on a violated constraint)."""
    if not values:
        return
    quote = conn.dialect.identifier_preparer.quote
    raw = conn.connection.driver_connection
    assert raw is not None
    names = ("id", *cols)
    procs = [(i, p) for i, p in enumerate(_processors(conn, table, names)) if p]
    try:
        if conn.dialect.name == "postgresql":
            _update_pg(conn, raw, table, names, values, procs)
        else:
            if procs:
                values = _convert_columns(values, procs)
            sets = ", ".join(f"{quote(c)} = ?" for c in cols)
            cur = raw.cursor()
            try:
                # The id goes last, to the WHERE.
                cur.executemany(
                    f"UPDATE {quote(table.name)} SET {sets} WHERE id = ?",
                    [(*row[1:], row[0]) for row in values],
                )
            finally:
                cur.close()
    except conn.dialect.loaded_dbapi.IntegrityError as exc:
        raise IntegrityError(f"bulk update of {table.name}", None, exc) from exc


def _update_pg(
    conn: Connection,
    raw: Any,
    table: Table,
    names: Sequence[str],
    values: Sequence[Sequence[Any]],
    procs: list[tuple[int, Any]],
) -> None:
    # JSON columns go in as nested JSON (not as text, which would land as a JSON
    # string); every other column through its bind processor, then orjson, which
    # writes aware datetimes as RFC 3339 text that timestamptz reads back exactly.
    plain = [(i, p) for i, p in procs if not isinstance(table.c[names[i]].type, JSON)]
    if plain:
        values = _convert_columns(values, plain)
    quote = conn.dialect.identifier_preparer.quote
    rows = orjson.dumps(
        [dict(zip(names, row, strict=True)) for row in values],
        default=str,
        option=orjson.OPT_NON_STR_KEYS,
    ).decode()
    sets = ", ".join(f"{quote(c)} = r.{quote(c)}" for c in names[1:])
    name = quote(table.name)
    with raw.cursor() as cur:
        cur.execute(
            f"UPDATE {name} AS t SET {sets} "
            f"FROM json_populate_recordset(NULL::{name}, %s::json) AS r WHERE t.id = r.id",
            (rows,),
        )


_SEQUENCES: dict[str, str] = {}  # table -> its id sequence (the schema names it)


def reserve_ids(conn: Connection, table: Table, count: int) -> list[int]:
    """Ids for `count` new rows of `table`, so children can be written without RETURNING.

    PostgreSQL draws them from the column's sequence (safe with concurrent writers);
    SQLite continues after the largest id, which is safe because ingest transactions
    take the write lock at BEGIN (BEGIN IMMEDIATE, see engine.py)."""
    if count == 0:
        return []
    if conn.dialect.name == "postgresql":
        # The sequence's name is looked up once per process and table: inside the
        # SELECT list, pg_get_serial_sequence() ran once per row and cost ten times the
        # nextval()s, and per batch it was a round trip of the webhook drain's few.
        seq = _SEQUENCES.get(table.name)
        if seq is None:
            seq = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name}
            ).scalar_one()
            _SEQUENCES[table.name] = seq
        rows = conn.execute(
            text("SELECT nextval(CAST(:seq AS regclass)) FROM generate_series(1, :n)"),
            {"seq": seq, "n": count},
        )
        return sorted(int(r[0]) for r in rows)
    top = conn.execute(text(f"SELECT coalesce(max(id), 0) FROM {table.name}")).scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + count))


def among(
    conn: Connection, column: Column[Any], values: Sequence[Any]
) -> Iterable[ColumnElement[bool]]:
    """Conditions `column IN values`, with the whole list as one JSON text parameter,
    unpacked server-side: `= ANY(ARRAY(SELECT json_array_elements_text(...)))` on
    PostgreSQL, `IN (SELECT value FROM json_each(...))` on SQLite. Neither driver then
    parses a statement with thousands of placeholders, nor adapts thousands of values
    one by one (psycopg's list adaptation was a third of a batch's lookup); the index
    is used the same way."""
    if not values:
        return
    listed = orjson.dumps(list(values)).decode()
    if conn.dialect.name == "postgresql":
        elements = func.json_array_elements_text(cast(bindparam(None, listed, type_=Text), JSON_PG))
        unpacked = select(cast(elements, column.type)).scalar_subquery()
        yield column == any_(func.array(unpacked))
        return
    # SQLite (make_engine accepts no other backend).
    yield column.in_(select(literal_column("value")).select_from(func.json_each(listed)))


def probe(
    conn: Connection,
    wanted: Sequence[ColumnElement[Any]],
    column: Column[Any],
    values: Sequence[Any],
) -> list[Any]:
    """The rows (`wanted` columns) whose `column` is among `values`, selected by that
    condition alone; the caller checks the rest (source, kind, open) on the few rows
    found. Next to an equality on another indexed column (`source = ?`), PostgreSQL's
    generic plan, or any plan made without statistics, may take that one to the index
    and test each row against the whole list: rows x values comparisons per batch,
    which grew with the table. With one condition the list is the index lookup."""
    found: list[Any] = []
    for cond in among(conn, column, values):
        found.extend(conn.execute(select(*wanted).where(cond)))
    return found
