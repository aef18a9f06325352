"""Shared fixtures. The `store` fixture runs each test on SQLite and on PostgreSQL.

LEADSYNC_TEST_PG_URL names the PostgreSQL server (and a database on it to connect
through) the suite may use. The suite never writes to that database: it creates a
database of its own on the same server (`leadsync_test_<random>`), uses only that,
and drops it when the session ends. Nothing a developer or CI already keeps there is
touched.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from connector.statuses import Catalogue
from connector.store import Store, open_store
from connector.store.tables import metadata

SERVER_URL = os.environ.get(
    "LEADSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# This session's own database on that server: a random name, so two sessions (or two
# developers) pointed at one server never share, and nothing else can be named so.
OWN_DATABASE = f"leadsync_test_{secrets.token_hex(6)}"
PG_URL = make_url(SERVER_URL).set(database=OWN_DATABASE).render_as_string(hide_password=False)
_created: list[str] = []


def _admin_urls() -> list[str]:
    """Where to issue CREATE/DROP DATABASE: the database the URL names, else `postgres`."""
    named = make_url(SERVER_URL)
    return [
        named.render_as_string(hide_password=False),
        named.set(database="postgres").render_as_string(hide_password=False),
    ]


def _admin(statement: str) -> None:
    failure: Exception | None = None
    for url in _admin_urls():
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(statement))
            return
        except Exception as exc:  # the named database may not exist; try the next
            failure = exc
        finally:
            engine.dispose()
    assert failure is not None
    raise failure


def _pg_available() -> bool:
    for url in _admin_urls():
        try:
            engine = create_engine(url)
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            engine.dispose()
            return True
        except Exception:
            continue
    return False


PG_UP = _pg_available()


def drop_own_database() -> None:
    """Drop this session's database, and only it (it is one this session created)."""
    if OWN_DATABASE in _created:
        _admin(f'DROP DATABASE IF EXISTS "{OWN_DATABASE}" WITH (FORCE)')
        _created.remove(OWN_DATABASE)


def reset_postgres(url: str = PG_URL) -> None:
    """A fresh, empty database of this session's own (dropped and created again)."""
    if url != PG_URL:
        raise ValueError("the suite only resets the database it created")
    drop_own_database()
    _admin(f'CREATE DATABASE "{OWN_DATABASE}"')
    _created.append(OWN_DATABASE)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _created:
        drop_own_database()


@pytest.fixture(scope="session")
def _pg_migrated() -> None:
    if not PG_UP:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable at {SERVER_URL}")
        pytest.skip(f"PostgreSQL not reachable at {SERVER_URL}")
    reset_postgres()
    open_store(PG_URL, upgrade=True).close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    request.getfixturevalue("_pg_migrated")
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield PG_URL


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url, Catalogue.default(), upgrade=True)
    yield opened
    opened.close()
