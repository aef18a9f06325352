"""The PostgreSQL database a benchmark empties: its own, never one it did not make.

A benchmark's store starts from an empty schema, which means DROP SCHEMA public CASCADE.
That runs only on a database the benchmark names for itself (created here when it is
missing) or one the user passed on purpose; the machine's shared databases (`test`,
`postgres`, ...) are refused, since other people's data lives there.
"""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SHARED = frozenset({"postgres", "test", "root", "template0", "template1"})


def refuse_shared(url: str) -> None:
    """SystemExit, before any work, when `url` names a shared database."""
    target = make_url(url)
    name = target.database or ""
    if not name or name in SHARED:
        own = target.set(database="lt_bench").render_as_string(hide_password=True)
        raise SystemExit(
            f"refusing to empty database {name!r}: it is shared, not this benchmark's. "
            f"Point the benchmark at a database of its own (e.g. {own}); it is created "
            "when missing."
        )


def empty_schema(url: str) -> None:
    """Give the database at `url` an empty public schema, creating the database first
    when it does not exist; SystemExit for a shared database."""
    refuse_shared(url)
    target = make_url(url)
    name = target.database
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(text("select 1 from pg_database where datname = :n"), {"n": name}):
            conn.execute(text(f'create database "{name}"'))
    admin.dispose()
    engine = create_engine(target, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("drop schema public cascade"))
        conn.execute(text("create schema public"))
    engine.dispose()


def drop_database(url: str) -> None:
    """Drop the database at `url` (one a benchmark made), whoever is still connected;
    SystemExit for a shared database."""
    refuse_shared(url)
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'drop database if exists "{target.database}" with (force)'))
    admin.dispose()
