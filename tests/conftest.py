"""Shared fixtures. The `store` fixture runs each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from connector.statuses import Catalogue
from connector.store import Store, open_store
from connector.store.tables import metadata

PG_URL = os.environ.get("LEADSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        with create_engine(PG_URL).connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:
        return False


PG_UP = _pg_available()


def reset_postgres(url: str = PG_URL) -> None:
    """An empty schema: drop everything leadsync created, then migrate from nothing."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def _pg_migrated() -> None:
    if not PG_UP:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
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
