"""Opening a store: engine per backend, SQLite tuning, Alembic migrations."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from connector.identity import IdentityRules
from connector.statuses import Catalogue

DEFAULT_URL = "sqlite:///leadsync.db"
MIGRATIONS = Path(__file__).parent / "migrations"


class StoreError(RuntimeError):
    """The store cannot be used as it is; the message says what to do."""


def _tune_sqlite(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control from the sqlite3 module (it would otherwise open and
    # close transactions on its own) so SQLAlchemy's BEGIN/COMMIT are the real ones.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL lets readers (the CLI, /readyz) work while the daemon writes; NORMAL is
    # durable across process crashes (only an OS crash can lose the last commit).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache: hot identity index
    # Checkpoint every ~40 MB of WAL instead of SQLite's 4 MB: an ingest batch dirties
    # thousands of random index pages, so at the default nearly every commit also runs
    # a checkpoint (copy back and fsync). Fewer fsyncs; the throughput gain it seemed
    # to give did not hold in an interleaved A/B (BENCHMARKS.md).
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.close()


class _WriteTurns:
    """Write transactions on one SQLite store take turns inside this process.

    IMMEDIATE takes the write lock up front: a transaction that reads and then writes
    (every ingest batch) then waits its turn instead of failing with "database is
    locked" when another writer got there first, and ids reserved after max(id)
    (store/bulk.py) cannot collide. Reads (Store.reader) begin DEFERRED: under WAL they
    need no lock at all, so `leadsync status` or /readyz never queue behind a batch.

    Waiting for SQLite's lock is polling: its busy handler sleeps 1, 2, 5 … 100 ms
    between tries, so under a daemon's load (a webhook insert per request beside the
    drain's batches) a writer could wait seconds while the lock sat free between
    sleeps. Here the process's writers queue on a Python lock instead, held from BEGIN
    IMMEDIATE to the end of COMMIT or ROLLBACK, and the next one starts the moment the
    previous one ends. Other processes still meet SQLite's own lock (busy_timeout).
    """

    def __init__(self, wait: float) -> None:
        self.lock = threading.Lock()
        self.wait = wait
        self.holders: set[int] = set()  # DB-API connections inside a turn, by id

    def begin(self, conn: Any) -> None:
        if conn.get_execution_options().get(_READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            return
        raw = _raw_id(conn.connection)
        # A thread that opens a second write transaction before ending its first would
        # wait for itself: after `wait`, SQLite's own busy_timeout decides instead.
        if self.lock.acquire(timeout=self.wait):
            self.holders.add(raw)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self.end(raw)
            raise

    def end(self, raw: int) -> None:
        if raw in self.holders:
            self.holders.discard(raw)
            self.lock.release()

    def install(self, engine: Engine) -> None:
        event.listen(engine, "begin", self.begin)
        dialect = engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def do_commit(dbapi_connection: Any) -> None:
            try:
                commit(dbapi_connection)
            finally:
                self.end(_raw_id(dbapi_connection))

        def do_rollback(dbapi_connection: Any) -> None:
            try:
                rollback(dbapi_connection)
            finally:
                self.end(_raw_id(dbapi_connection))

        # Instance attributes: this engine's dialect only (OptionEngines share it).
        dialect.do_commit = do_commit  # type: ignore[method-assign]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def _raw_id(connection: Any) -> int:
    """The sqlite3 connection's id, whether given it or the pool's proxy of it."""
    return id(getattr(connection, "dbapi_connection", connection))


_READ_ONLY = "leadsync_read_only"


def dump_json(value: Any) -> str:
    """The store's JSON encoder (engine option and bulk writes alike)."""
    # Every lead's raw payload is JSON in the store: orjson keeps that off the profile.
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _loads(value: Any) -> Any:
    # SQLite gives a JSON column numeric affinity: a stored `4` comes back as the int.
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def make_engine(url: str) -> Engine:
    """An engine for `url`, tuned for its backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, json_serializer=dump_json, json_deserializer=_loads, hide_parameters=True
        )
        event.listen(engine, "connect", _tune_sqlite)
        _WriteTurns(wait=30.0).install(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(
            parsed,
            pool_pre_ping=True,
            # A statement's parameters are people's emails and phones: keep them out of
            # error messages, which reach logs and `leadsync status`.
            hide_parameters=True,
            pool_size=5,
            max_overflow=5,
            json_serializer=dump_json,
            json_deserializer=_loads,
        )
    raise StoreError(
        f"unsupported store url {parsed.render_as_string()!r}: use sqlite:/// or postgresql://"
    )


def _alembic(connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic(None)).get_current_head()


@dataclass
class Store:
    """An open store: the engine, the status catalogue its contacts use, and the rules
    that say which records are one person (the YAML's `identity:`)."""

    engine: Engine
    catalogue: Catalogue = field(default_factory=Catalogue.default)
    identity: IdentityRules = field(default_factory=IdentityRules)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @cached_property
    def reader(self) -> Engine:
        """The engine for read-only work: the same pool, but SQLite transactions that
        take no write lock. Writing through it is a bug (it may fail as busy)."""
        return self.engine.execution_options(**{_READ_ONLY: True})

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def current_revision(self) -> str | None:
        with self.reader.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def upgrade(self) -> None:
        """Apply every pending migration (`leadsync db upgrade`)."""
        with self.engine.begin() as conn:
            command.upgrade(_alembic(conn), "head")

    def is_current(self) -> bool:
        return self.current_revision() == head_revision()

    def close(self) -> None:
        self.engine.dispose()


def store_url(explicit: str | None = None) -> str:
    """The store URL: explicit, else LEADSYNC_STORE_URL, else the embedded default."""
    return explicit or os.environ.get("LEADSYNC_STORE_URL") or DEFAULT_URL


def open_store(
    url: str | None = None,
    catalogue: Catalogue | None = None,
    upgrade: bool | None = None,
    identity: IdentityRules | None = None,
) -> Store:
    """Open the store at `url`.

    The embedded SQLite default upgrades itself on first use (nothing to set up);
    PostgreSQL is shared by replicas and upgraded deliberately with `leadsync db upgrade`,
    so an outdated schema there is an error that says so.
    """
    engine = make_engine(store_url(url))
    store = Store(engine, catalogue or Catalogue.default(), identity or IdentityRules())
    if upgrade is None:
        upgrade = engine.dialect.name == "sqlite"
    if upgrade:
        if not store.is_current():
            store.upgrade()
    elif not store.is_current():
        raise StoreError(
            f"the store at {store.url} is at revision {store.current_revision()!r}, "
            f"leadsync needs {head_revision()!r}: run `leadsync db upgrade`"
        )
    from connector.store.contacts import apply_catalogue

    apply_catalogue(store)
    return store
