"""Metrics a hostile day needs: failed job runs per job, and the backlogs (webhook
deliveries, outbox rows) pending and dead, read from the outbox table as it is."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from starlette.testclient import TestClient

from connector.config import LeadsyncConfig
from connector.ports import Job, Runtime
from connector.runtime.daemon import Daemon
from connector.runtime.metrics import JOB_FAILURES, REGISTRY
from connector.runtime.server import build_app, outbox_backlog
from connector.store import Store
from connector.sync import outbox


class Jobs:
    name = "inline"

    def __init__(self, *jobs: Job) -> None:
        self._jobs = list(jobs)

    def jobs(self, runtime: Runtime) -> list[Job]:
        return self._jobs


def test_a_failing_job_is_counted_per_job(store: Store) -> None:
    def broken(runtime: Runtime) -> None:
        raise RuntimeError("a record the store refused")

    job = Job(id="hostile.broken", run=broken, every=60)
    daemon = Daemon(LeadsyncConfig(), store, {"inline": Jobs(job)})  # type: ignore[dict-item]
    before = REGISTRY.get_sample_value("leadsync_job_failures_total", {"job": job.id}) or 0.0
    assert daemon.run_once() == 1
    assert daemon.run_once() == 1
    assert JOB_FAILURES.labels(job.id)._value.get() == before + 2
    metrics = TestClient(build_app(daemon, {})).get("/metrics").text
    assert f'leadsync_job_failures_total{{job="{job.id}"}} {before + 2}' in metrics


def _enqueue(store: Store, destination: str, key: str) -> None:
    with store.engine.begin() as conn:
        outbox.enqueue(conn, destination, "status", key, None, {"x": 1})


def test_outbox_backlog_counts_pending_rows_and_dead_letters_apart(
    store: Store,
) -> None:
    daemon = Daemon(LeadsyncConfig(), store, {})
    for key in ("a", "b", "c"):
        _enqueue(store, "hubspot", key)
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE outbox SET delivered_at = :now WHERE key = 'a'"),
            {"now": datetime.now(UTC)},
        )
    assert outbox_backlog(daemon) == {"hubspot": {"pending": 2, "dead": 0}}
    with store.engine.begin() as conn:  # a dead letter is counted apart
        conn.execute(
            text("UPDATE outbox SET dead_at = :now WHERE key = 'b'"),
            {"now": datetime.now(UTC)},
        )
    assert outbox_backlog(daemon) == {"hubspot": {"pending": 1, "dead": 1}}
    metrics = TestClient(build_app(daemon, {})).get("/metrics").text
    assert 'leadsync_outbox_rows{destination="hubspot",state="dead"} 1.0' in metrics
    assert 'leadsync_outbox_rows{destination="hubspot",state="pending"} 1.0' in metrics
