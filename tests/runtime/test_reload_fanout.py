"""SIGHUP reconnects the fan-out: a two-way system added to the YAML of a running
`leadsync run` is fanned out to from the reload on, one removed is no longer, and a
reload that is refused keeps the old wiring. A real daemon process, the HubSpot
emulator in this process, leads created inside the daemon (tests/runtime/lead_plugin.py).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.hubspot.fake import FakeHubSpot
from connector.store import open_store
from connector.store.tables import outbox
from tests.runtime.test_daemon_process import ROOT, free_port, leadsync, wait_for

pytestmark = pytest.mark.slow

PLAIN = "default_region: MY\n"


def with_hubspot(fake: FakeHubSpot, extra: str = "") -> str:
    return (
        f"{PLAIN}hubspot:\n  token: {fake.token}\n  portal_id: {fake.portal.portal_id}\n"
        f"  api_url: {fake.base_url}\n  poll_every: 3600\n{extra}"
    )


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    # The emulator's uvicorn sets the process's "uvicorn" loggers to CRITICAL
    # (connector/emulator.py); later tests in this process read those loggers.
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.asgi")]
    levels = [logger.level for logger in loggers]
    with FakeHubSpot() as hs:
        yield hs
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def rows_for(store: str, destination: str) -> list[str]:
    """The outbox rows' contacts' keys for `destination` (e.g. "contact:3")."""
    opened = open_store(store, upgrade=True)
    query = select(outbox.c.key).where(outbox.c.destination == destination).order_by(outbox.c.id)
    try:
        with opened.engine.connect() as conn:
            return [str(r[0]) for r in conn.execute(query)]
    finally:
        opened.close()


def test_sighup_reconnects_the_fan_out(
    tmp_path: Path, fake: FakeHubSpot, daemons: list[subprocess.Popen[str]]
) -> None:
    store = f"sqlite:///{tmp_path / 'daemon.db'}"
    config = tmp_path / "leadsync.yaml"
    config.write_text(PLAIN)
    port = free_port()
    log = tmp_path / "daemon.log"
    env = {
        **os.environ,
        "LEADSYNC_EXTRA_PLUGINS": "tests.runtime.lead_plugin:plugin",
        "PYTHONPATH": str(ROOT),
    }
    with log.open("w") as sink:
        proc = subprocess.Popen(
            leadsync(store, "--config", str(config), "run", "--port", str(port)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
    daemons.append(proc)

    def lead(email: str) -> None:
        url = f"http://127.0.0.1:{port}/webhooks/lead/{email}"
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30) as r:
            assert r.read() == b"1"  # created in the daemon process

    def reloads() -> int:
        return log.read_text().count("config.reloaded")

    def rejections() -> int:
        return log.read_text().count("config.reload_rejected")

    wait_for(lambda: "daemon.started" in log.read_text(), "the daemon", limit=60)
    lead("before@example.com")
    assert rows_for(store, "hubspot") == []  # no HubSpot in the YAML: nothing for it

    config.write_text(with_hubspot(fake))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads() == 1, "the reload adding HubSpot", limit=60)
    lead("added@example.com")
    assert len(rows_for(store, "hubspot")) == 1
    # ... and the new outbox job delivers it: HubSpot gets the contact.
    wait_for(lambda: fake.portal.find("added@example.com", "email") is not None, "the upsert")
    assert fake.portal.find("before@example.com", "email") is None

    # Refused after the plugins have read it (a schedule for a job nobody has): the old
    # wiring stays, HubSpot included, though this YAML drops it.
    config.write_text(f"{PLAIN}schedules:\n  no.such.job:\n    every: 60\n")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: rejections() == 1, "the rejection", limit=60)
    lead("refused@example.com")
    assert len(rows_for(store, "hubspot")) == 2

    config.write_text(PLAIN)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads() == 2, "the reload removing HubSpot", limit=60)
    lead("removed@example.com")
    assert len(rows_for(store, "hubspot")) == 2  # removed: nothing more for it

    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()[-2000:]
