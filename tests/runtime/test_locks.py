"""One runner per job across replicas (PostgreSQL advisory locks); one daemon per SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import LeadsyncConfig
from connector.ports import Job
from connector.runtime.daemon import Daemon
from connector.runtime.locks import JobLocks, SingleProcessError, SqliteFileLock, lock_key
from connector.statuses import Catalogue
from connector.store import Store, open_store
from tests.runtime.test_scheduler import Jobs, runs


def test_lock_key_is_stable_and_64_bit() -> None:
    assert lock_key("facebook.poll") == lock_key("facebook.poll")
    assert lock_key("facebook.poll") != lock_key("outbox.deliver")
    assert -(2**63) <= lock_key("x") < 2**63


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_second_holder_on_postgres_skips(store_url: str) -> None:
    one = open_store(store_url, Catalogue.default(), upgrade=True)
    two = open_store(store_url, Catalogue.default(), upgrade=True)
    try:
        first, second = JobLocks(one), JobLocks(two)
        with first.hold("fb.poll") as got:
            assert got is True
            with second.hold("fb.poll") as other:
                assert other is False
            with second.hold("another.job") as unrelated:
                assert unrelated is True
            # a replica's runner skips the job, and records no run
            calls: list[int] = []
            replica = Daemon(
                LeadsyncConfig(),
                two,
                {"i": Jobs(Job("fb.poll", lambda rt: calls.append(1), every=5))},  # type: ignore[dict-item]
            )
            assert replica.run_once() == 0
            assert calls == [] and runs(two, "fb.poll") == []
        with second.hold("fb.poll") as later:
            assert later is True  # released when the first run ended
    finally:
        one.close()
        two.close()


def test_sqlite_file_is_single_process(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'one.db'}", upgrade=True)
    lock = SqliteFileLock.for_store(store)
    assert lock is not None
    lock.acquire()
    try:
        again = SqliteFileLock.for_store(store)
        assert again is not None
        with pytest.raises(SingleProcessError) as refused:
            again.acquire()
        message = str(refused.value)
        assert "another leadsync run holds this SQLite store" in message
        assert "use PostgreSQL for replicas" in message
        import os

        assert f"(pid {os.getpid()})" in message
    finally:
        lock.release()
    lock.acquire()  # free again once released
    lock.release()
    store.close()


def test_no_file_lock_for_postgres_or_memory(store: Store) -> None:
    if store.dialect == "postgresql":
        assert SqliteFileLock.for_store(store) is None
    memory = open_store("sqlite://", upgrade=True)
    assert SqliteFileLock.for_store(memory) is None
    memory.close()


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_two_replicas_never_run_one_job_at_once(store_url: str) -> None:
    import itertools
    import time

    from connector.runtime import scheduler as sched
    from tests.runtime.test_scheduler import wait_for

    def work(rt: object) -> None:
        time.sleep(0.03)

    stores = [open_store(store_url, Catalogue.default(), upgrade=True) for _ in range(2)]
    replicas = [
        Daemon(LeadsyncConfig(), s, {"i": Jobs(Job("shared.poll", work, every=0.02))})  # type: ignore[dict-item]
        for s in stores
    ]
    for index, d in enumerate(replicas):
        d.replica = f"replica-{index}"  # one process here; two names in job_runs
        d.scheduler = sched.build(d.jobs(), d.runner)
        d.scheduler.start()
    try:
        wait_for(lambda: len([r for r in runs(stores[0]) if r["ok"]]) >= 20, "20 runs")
    finally:
        for d in replicas:
            d.stopping.set()
            d.scheduler.shutdown(wait=True)
    done = sorted(
        (r for r in runs(stores[0]) if r["finished_at"] is not None), key=lambda r: r["started_at"]
    )
    for before, after in itertools.pairwise(done):
        assert after["started_at"] >= before["finished_at"], "two runs overlapped"
    for s in stores:
        s.close()


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_failing_run_releases_its_lock(store_url: str) -> None:
    one = open_store(store_url, Catalogue.default(), upgrade=True)
    two = open_store(store_url, Catalogue.default(), upgrade=True)

    def broken(rt: object) -> None:
        raise RuntimeError("boom")

    try:
        d = Daemon(LeadsyncConfig(), one, {"i": Jobs(Job("lk.fail", broken, every=5))})  # type: ignore[dict-item]
        assert d.run_once() == 1
        with JobLocks(two).hold("lk.fail") as got:
            assert got is True
    finally:
        one.close()
        two.close()
