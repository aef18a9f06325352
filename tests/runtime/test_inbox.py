"""The webhook inbox's group writer: concurrent deliveries committed together."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text

from connector.runtime import inbox
from connector.store import open_store
from connector.store.tables import webhook_deliveries


def test_deliveries_waiting_for_the_lock_are_committed_in_one_transaction(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'inbox.db'}")
    commits: list[str] = []
    event.listen(store.engine, "commit", lambda _c: commits.append(threading.current_thread().name))
    writer = inbox.writer(store)
    assert inbox.writer(store) is writer  # one per store
    with store.engine.begin():  # another write holds the store: the writer must wait
        futures = [writer.submit("facebook", b'{"n": %d}' % i) for i in range(200)]
        assert not any(f.done() for f in futures)  # nothing answered before it is stored
    for f in futures:
        f.result(timeout=30)
    # The first batch took what had arrived when the writer started; everything that
    # queued while it waited went in one more transaction.
    assert commits.count("inbox-writer") <= 2
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(webhook_deliveries)).scalar() == 200
    assert inbox.pending(store) == 200
    store.close()


def test_a_failed_commit_fails_every_request_of_its_batch(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'broken.db'}")  # its own: the table goes
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE webhook_deliveries"))
    failed = inbox.writer(store).submit("facebook", b"{}")
    with pytest.raises(Exception, match="webhook_deliveries"):
        failed.result(timeout=30)  # the handler answers 500 and Meta retries
    store.close()
