"""`leadsync run` as real processes against the Graph API emulator: killed with -9 ten
times mid-ingest, three replicas on one PostgreSQL, and PostgreSQL restarted under it."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select

from adapters.facebook.fake import FakeGraph
from connector.store import open_store
from connector.store.tables import cursors, job_runs, leads, quarantine, webhook_deliveries
from connector.sync import outbox
from tests.conftest import PG_URL, reset_postgres
from tests.reliability.daemons import free_port, round_robin, start_daemon, wait_ready, write_config
from tests.reliability.pgcluster import Cluster, throwaway_cluster, why_unavailable

pytestmark = pytest.mark.slow
DAY = 86400.0


@pytest.fixture
def fake() -> Iterator[Any]:
    graph = FakeGraph(seed=21)
    graph.start()
    yield graph
    graph.stop()


def stored_ids(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        ids = list(conn.execute(select(leads.c.source_id)).scalars())
        ids += [
            str(raw.get("id"))
            # Whole records only: a field issue's raw is one value of a stored lead.
            for raw in conn.execute(
                select(quarantine.c.raw).where(quarantine.c.kind == "record")
            ).scalars()
            if isinstance(raw, dict)
        ]
    engine.dispose()
    return ids


def count(url: str) -> int:
    """Leads and quarantined records stored so far (cheaper than reading every id)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(leads)).scalar_one()
            records = select(func.count()).where(quarantine.c.kind == "record")
            n += conn.execute(records).scalar_one()  # as stored_ids counts them
    except Exception:  # the first run may not have made the tables yet
        n = 0
    engine.dispose()
    return int(n)


def test_kill_9_ten_times_during_a_20000_lead_ingest(fake: Any, tmp_path: Path) -> None:
    page = fake.add_page("Busy Page")
    now = time.time()
    forms = [fake.add_form(page.id, name=f"Form {i}") for i in range(4)]
    made = {
        lead
        for form in forms
        for lead in fake.generate_leads(form, 5000, start=now - 10 * DAY, end=now - 120)
    }
    config = write_config(
        tmp_path / "leadsync.yaml", fake, page, poll_every=1, lag=60, first_poll_days=30
    )
    url = f"sqlite:///{tmp_path / 'store.db'}"
    open_store(url).close()
    rng = random.Random(4)
    log = tmp_path / "daemon.log"
    # 50 ms a Graph call (the real API is slower), so the ingest spans all ten kills.
    fake.faults.latency = 0.05
    seen = 0
    for _ in range(10):
        daemon = start_daemon(config, url, free_port(), log)
        # Kill once this run has committed a random amount of its own: the gate is the
        # progress observed in the store, not a wall-clock pause, so a faster machine
        # (which ingests more per second) still kills mid-ingest. 10 kills of at most
        # 600 leads each leave most of the 20,000 to the final run.
        target = seen + rng.randint(1, 600)
        deadline = time.time() + 120
        while time.time() < deadline and daemon.poll() is None and count(url) < target:
            time.sleep(0.01)
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait()
        now_stored = len(stored_ids(url))
        assert now_stored > seen, "a run made no progress"
        seen = now_stored
    assert 0 < len(set(stored_ids(url))) < len(made), "the kills did not land mid-ingest"
    fake.faults.latency = 0.0
    finish = subprocess.run(
        [*_cli(config, url), "run", "--once"], capture_output=True, text=True, timeout=300
    )
    assert finish.returncode == 0, finish.stderr[-2000:]
    ids = stored_ids(url)
    assert len(ids) == len(set(ids)) == len(made)  # every lead exactly once
    assert set(ids) == made
    engine = create_engine(url)
    with engine.connect() as conn:
        values = list(conn.execute(select(cursors.c.value)).scalars())
    engine.dispose()
    assert len(values) == len(forms)
    assert all("window" not in v and v["until"] >= now - 120 for v in values)


def _cli(config: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "connector", "-c", str(config), "--store", url]


@pytest.mark.postgres
@pytest.mark.usefixtures("_pg_migrated")
def test_three_replicas_on_one_postgres(fake: Any, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from connector.store.tables import contacts

    reset_postgres()
    open_store(PG_URL, upgrade=True).close()
    page = fake.add_page("Shared Page")
    now = time.time()
    forms = [fake.add_form(page.id, name=f"Form {i}") for i in range(3)]
    made = {
        lead
        for form in forms
        for lead in fake.generate_leads(form, 300, start=now - DAY, end=now - 120)
    }
    config = write_config(
        tmp_path / "leadsync.yaml", fake, page, poll_every=1, lag=30, first_poll_days=2
    )
    # Outbound effects waiting for a destination every replica offers, for 30 contacts
    # in random order (each contact's effects must arrive in id order).
    engine = create_engine(PG_URL)
    now_at = datetime.now(UTC)
    with engine.begin() as conn:
        people = [
            conn.execute(
                insert(contacts)
                .values(status=0, custom={}, created_at=now_at, updated_at=now_at)
                .returning(contacts.c.id)
            ).scalar_one()
            for _ in range(30)
        ]
        pick = random.Random(3)
        for i in range(300):
            outbox.enqueue(
                conn, "recorder", "test.effect", f"effect-{i}", pick.choice(people), {"n": i}
            )
    engine.dispose()
    deliveries = tmp_path / "outbox.log"
    env = {
        "LEADSYNC_EXTRA_PLUGINS": "tests.reliability.outbox_plugin:plugin",
        "OUTBOX_LOG": str(deliveries),
    }
    ports = [free_port() for _ in range(3)]
    daemons = [start_daemon(config, PG_URL, p, tmp_path / f"d{p}.log", env) for p in ports]
    try:
        for port in ports:
            wait_ready(port)
        with round_robin(ports) as balancer:
            fake.install_app(page.id)
            fake.subscribe_webhook(balancer + "/webhooks/facebook", verify_token="verify-me")
            fake.faults.duplicate_rate = 0.3
            for i in range(60):
                made.add(fake.add_lead(forms[i % 3], {"email": f"hook{i}@example.com"}))
                time.sleep(0.02)
            fake.flush_webhooks()
            deadline = time.time() + 90
            while time.time() < deadline and len(set(stored_ids(PG_URL))) < len(made):
                time.sleep(0.5)
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        codes = [d.wait(60) for d in daemons]
    assert codes == [0, 0, 0]
    ids = stored_ids(PG_URL)
    assert len(ids) == len(set(ids)) and set(ids) == made  # every lead ingested once
    engine = create_engine(PG_URL)
    with engine.connect() as conn:
        runs = conn.execute(
            select(job_runs.c.job_id, job_runs.c.replica, job_runs.c.started_at,
                   job_runs.c.finished_at).order_by(job_runs.c.job_id, job_runs.c.started_at)
        ).all()  # fmt: skip
        hooks = conn.execute(
            select(webhook_deliveries.c.processed_at, webhook_deliveries.c.error)
        ).all()
    engine.dispose()
    # Every webhook the balancer spread over the replicas was stored (Meta sent some
    # twice), and none that was drained failed.
    assert len(hooks) >= 60 and not [h for h in hooks if h.error]
    assert any(h.processed_at for h in hooks), "no replica drained a webhook"
    assert len({r.replica for r in runs}) > 1, "the jobs never moved between replicas"
    delivered = [line.split() for line in deliveries.read_text().splitlines()]
    assert len(delivered) == len({d[0] for d in delivered}) == 300  # none delivered twice
    by_contact: dict[str, list[int]] = {}
    for row_id, _pid, contact in delivered:
        by_contact.setdefault(contact, []).append(int(row_id))
    assert len(by_contact) == 30
    assert all(seq == sorted(seq) for seq in by_contact.values()), "per-contact order broken"
    by_job: dict[str, list[Any]] = {}
    for run in runs:
        by_job.setdefault(run.job_id, []).append(run)
    for job, seq in by_job.items():
        for before, after in itertools.pairwise(seq):
            assert before.finished_at is not None, f"{job} run never finished"
            assert after.started_at >= before.finished_at, f"{job} ran on two replicas at once"


def _ready(port: int) -> int:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
    except requests.RequestException:
        return 0


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this test's own: the machine's cluster is never touched."""
    reason = why_unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL restart test: {reason}")
        pytest.skip(reason)
    with throwaway_cluster() as cluster:
        yield cluster


def test_postgres_restart_under_a_running_daemon(
    fake: Any, tmp_path: Path, own_cluster: Cluster
) -> None:
    url = own_cluster.url
    open_store(url, upgrade=True).close()
    page = fake.add_page("Page")
    form = fake.add_form(page.id)
    now = time.time()
    made = set(fake.generate_leads(form, 100, start=now - DAY, end=now - 120, bad_rate=0))
    config = write_config(
        tmp_path / "leadsync.yaml", fake, page, poll_every=1, lag=600, first_poll_days=2
    )
    port = free_port()
    daemon = start_daemon(config, url, port, tmp_path / "daemon.log")
    try:
        wait_ready(port)
        deadline = time.time() + 30
        while time.time() < deadline and _ready(port) != 200:
            time.sleep(0.2)
        assert _ready(port) == 200
        own_cluster.stop("fast")
        try:
            seen_down = False
            for _ in range(50):
                if _ready(port) == 503:
                    seen_down = True
                    break
                time.sleep(0.2)
            # Leads keep arriving while the store is down.
            made.update(fake.add_lead(form, {"email": f"late{i}@example.com"}) for i in range(5))
        finally:
            own_cluster.start()
        assert seen_down, "/readyz did not report the store down"
        deadline = time.time() + 60
        while time.time() < deadline and (_ready(port) != 200 or set(stored_ids(url)) != made):
            time.sleep(0.5)
        assert _ready(port) == 200  # recovered by itself
        ids = stored_ids(url)
        assert len(ids) == len(set(ids)) and set(ids) == made  # nothing lost
        assert daemon.poll() is None  # it never died
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
