"""At most one running instance of a job: per replica set on PostgreSQL, per file on SQLite.

PostgreSQL: each job run holds `pg_try_advisory_lock(key)` on a connection of its own for
as long as the job runs; a replica that does not get it skips that run (another replica
is doing it). A session lock dies with its connection, so a replica killed mid-run frees
its jobs at once.

SQLite: the store is one file that one process writes. The daemon takes an exclusive,
non-blocking `flock` on `<db file>.lock` at start and keeps it until it exits; a second
daemon on the same file is refused with a message that says what to do instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, text

from connector.store import Store, StoreError


def lock_key(job_id: str) -> int:
    """A stable signed 64-bit key for `job_id` (the same in every replica and release)."""
    digest = hashlib.blake2b(f"leadsync.job:{job_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class JobLocks:
    """`hold(job_id)` yields True when this process may run the job now."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.shared = store.dialect == "postgresql"

    @contextlib.contextmanager
    def hold(self, job_id: str) -> Iterator[bool]:
        if not self.shared:
            # SQLite: the file lock makes this process the only runner; APScheduler's
            # max_instances=1 does the rest.
            yield True
            return
        key = lock_key(job_id)
        conn = self.store.engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            if not got:
                yield False
                return
            try:
                yield True
            finally:
                self._unlock(conn, key)
        finally:
            conn.close()

    @staticmethod
    def _unlock(conn: Connection, key: int) -> None:
        """Release the lock; a connection that may still hold it is discarded, never
        returned to the pool (a pooled connection holding the lock would block the job
        on every replica until it is closed)."""
        try:
            released = conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key}).scalar()
            conn.commit()
        except Exception:
            released = False
        if not released:
            with contextlib.suppress(Exception):
                conn.invalidate()


class SingleProcessError(StoreError):
    """A second daemon on the same SQLite file."""


class SqliteFileLock:
    """An exclusive flock on `<db file>.lock`, held for the life of the daemon."""

    def __init__(self, db_path: str | Path) -> None:
        self.path = Path(f"{db_path}.lock")
        self._file: IO[str] | None = None

    @classmethod
    def for_store(cls, store: Store) -> SqliteFileLock | None:
        """The lock for a file-backed SQLite store; None for PostgreSQL or :memory:."""
        if store.dialect != "sqlite":
            return None
        database = store.engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return cls(Path(database).resolve())

    def acquire(self) -> None:
        import fcntl

        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            handle.close()
            raise SingleProcessError(
                f"another leadsync run holds this SQLite store (pid {pid}); SQLite stores "
                "are single-process: use PostgreSQL for replicas"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
