"""`leadsync run` and `leadsync status` as real processes, with the fake plugin loaded
through LEADSYNC_EXTRA_PLUGINS."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from connector.store import open_store
from connector.store.tables import job_runs
from tests.ports import free_port as free_port  # re-exported for the other daemon tests

ROOT = Path(__file__).parents[2]
# Real processes: 2-4 s each on an idle machine, more under load (`-m "not slow"` skips).
pytestmark = pytest.mark.slow


def env(tmp_path: Path, jobs: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "LEADSYNC_EXTRA_PLUGINS": "tests.runtime.fake_plugin:plugin",
        "PYTHONPATH": str(ROOT),
        "FAKE_JOBS": jobs,
        "FAKE_DIR": str(tmp_path),
        **extra,
    }


def leadsync(store: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "connector", "--store", store, *args]


def wait_for(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def runs(store: str) -> list[dict[str, object]]:
    """This test's job runs (the fake plugin's), oldest first."""
    opened = open_store(store, upgrade=True)
    query = select(job_runs).where(job_runs.c.job_id.like("fake.%")).order_by(job_runs.c.id)
    try:
        with opened.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
    finally:
        opened.close()


@pytest.fixture
def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'daemon.db'}"


def test_run_once_runs_every_job_and_exits(tmp_path: Path, store_url: str) -> None:
    sqlite = store_url  # both stores: the SQLite file lock and the PostgreSQL advisory locks
    proc = subprocess.run(
        leadsync(sqlite, "run", "--once"),
        env=env(tmp_path, "tick,slow", FAKE_SLOW_BATCHES="2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "tick").read_text() == "1"
    assert (tmp_path / "slow.batches").read_text() == "2"
    assert [(r["job_id"], r["ok"]) for r in runs(sqlite)] == [
        ("fake.tick", True),
        ("fake.slow", True),
    ]
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert {"job.started", "job.finished"} <= {e["event"] for e in events}
    finished = [e for e in events if e["event"] == "job.finished" and e["job"] == "fake.slow"]
    assert finished[0]["batches"] == 2  # the counts a job returns are logged with it


def test_status_json_and_table(
    tmp_path: Path, sqlite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.config import LeadsyncConfig
    from connector.runtime.daemon import Daemon
    from tests.runtime.fake_plugin import FakePlugin

    monkeypatch.setenv("FAKE_DIR", str(tmp_path))
    monkeypatch.setenv("FAKE_JOBS", "tick,fail")
    store = open_store(sqlite, upgrade=True)
    Daemon(LeadsyncConfig(), store, {"fake": FakePlugin()}).run_once()  # type: ignore[dict-item]
    store.close()
    status = subprocess.run(
        leadsync(sqlite, "status", "--json"),
        env=env(tmp_path, "tick"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert {j["job_id"]: j["ok"] for j in data["jobs"]} == {"fake.tick": True, "fake.fail": False}
    assert data["quarantine_open"] == 0 and data["webhooks_pending"] == 0
    table = subprocess.run(
        leadsync(sqlite, "status"),
        env=env(tmp_path, "tick", COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0, table.stderr
    assert "fake.fail" in table.stdout and "the fake source is broken" in table.stdout


def test_run_once_fails_when_a_job_fails(tmp_path: Path, sqlite: str) -> None:
    proc = subprocess.run(
        leadsync(sqlite, "run", "--once"),
        env=env(tmp_path, "fail,tick"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "RuntimeError: the fake source is broken" in proc.stderr
    assert [(r["job_id"], r["ok"]) for r in runs(sqlite)] == [
        ("fake.fail", False),
        ("fake.tick", True),
    ]


def test_sigterm_finishes_the_batch_and_exits_0(
    tmp_path: Path, sqlite: str, daemons: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        leadsync(sqlite, "run", "--port", str(port)),
        env=env(tmp_path, "slow"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemons.append(proc)
    wait_for(lambda: (tmp_path / "slow.batches").exists(), "the slow job's first batch")
    health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert health.status == 200
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert (tmp_path / "slow.finished").exists()  # returned between batches, not killed
    assert [(r["job_id"], r["ok"]) for r in runs(sqlite)] == [("fake.slow", True)]
    assert "daemon.stopped" in stderr


def test_second_daemon_on_one_sqlite_file_is_refused(
    tmp_path: Path, sqlite: str, daemons: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    first = subprocess.Popen(
        leadsync(sqlite, "run", "--port", str(port)),
        env=env(tmp_path, "tick"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemons.append(first)
    wait_for(lambda: (tmp_path / "tick").exists(), "the first daemon's tick")
    second = subprocess.run(
        leadsync(sqlite, "run", "--once"),
        env=env(tmp_path, "tick"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2
    assert f"another leadsync run holds this SQLite store (pid {first.pid})" in second.stderr
    assert "use PostgreSQL for replicas" in second.stderr
    # a webhook route of the plugin, served by the running daemon, wakes its job
    reply = urllib.request.urlopen(f"http://127.0.0.1:{port}/webhooks/fake", timeout=10)
    assert reply.read() == b"hello"
    wait_for(lambda: (tmp_path / "tick").read_text() == "2", "the woken tick")
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert first.returncode == 0


def test_sighup_reloads_a_valid_config_and_keeps_the_old_one_otherwise(
    tmp_path: Path, sqlite: str, daemons: list[subprocess.Popen[str]]
) -> None:
    config = tmp_path / "leadsync.yaml"
    config.write_text("default_region: MY\n")
    log = tmp_path / "daemon.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [*leadsync(sqlite, "--config", str(config), "run", "--port", str(free_port()))],
            env=env(tmp_path, "tick"),
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
    daemons.append(proc)
    wait_for(lambda: (tmp_path / "tick").exists(), "first tick")
    config.write_text("default_region: nowhere\n")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config.reload_rejected" in log.read_text(), "the rejection")
    assert "default_region" in log.read_text()  # says why
    config.write_text("default_region: PL\n")
    proc.send_signal(signal.SIGHUP)
    # a valid reload rebuilds the jobs, which run again at once
    wait_for(lambda: "config.reloaded" in log.read_text(), "the reload")
    wait_for(lambda: (tmp_path / "tick").read_text() == "2", "jobs rebuilt")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 0


def test_a_taken_port_is_one_clear_error(tmp_path: Path, sqlite: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            leadsync(sqlite, "run", "--port", str(port)),
            env=env(tmp_path, "tick"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert f"could not listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
