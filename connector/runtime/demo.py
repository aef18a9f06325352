"""The live part of `leadsync demo`: the real daemon against the adapters' emulators.

Each adapter that offers a `LiveDemo` starts its emulator and contributes the config
section that points at it; the daemon then runs exactly as `leadsync run` would (its
scheduler, its HTTP server for webhooks), on the demo's SQLite store, for a number of
seconds, while the emulators send a few more leads by webhook."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import requests
from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select

from connector.config import config_model
from connector.ports import LiveDemo, Plugin
from connector.runtime.daemon import Daemon
from connector.store import Store
from connector.store.tables import contacts, leads, quarantine, webhook_deliveries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def counts(store: Store) -> dict[str, Any]:
    """What the store holds now, for the progress display."""
    with store.reader.connect() as conn:

        def n(table: Any, *where: Any) -> int:
            query = select(func.count()).select_from(table).where(*where)
            return int(conn.execute(query).scalar_one())

        rows = conn.execute(select(leads.c.source, func.count()).group_by(leads.c.source))
        by_source: dict[str, int] = {str(k): int(v) for k, v in rows}
        return {
            "contacts": n(contacts, contacts.c.merged_into.is_(None)),
            "leads": by_source,
            "quarantined": n(quarantine, quarantine.c.resolved_at.is_(None)),
            "webhooks": n(webhook_deliveries),
            "webhooks_pending": n(webhook_deliveries, webhook_deliveries.c.processed_at.is_(None)),
        }


def _table(now: dict[str, Any], elapsed: float, seconds: float) -> Table:
    table = Table(title=f"leadsync run (demo): {elapsed:4.0f} s of {seconds:.0f} s")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("contacts", str(now["contacts"]))
    for source, n in sorted(now["leads"].items()):
        table.add_row(f"leads from {source}", str(n))
    table.add_row("quarantined", str(now["quarantined"]))
    table.add_row("webhooks received (pending)", f"{now['webhooks']} ({now['webhooks_pending']})")
    return table


def run_live(
    store: Store, plugins: dict[str, Plugin], seconds: float, console: Console
) -> dict[str, Any]:
    """Run the daemon against every adapter's emulator for `seconds`; the final counts."""
    parts: list[LiveDemo] = [
        p.demo_live() for _, p in sorted(plugins.items()) if hasattr(p, "demo_live")
    ]
    if not parts:
        return counts(store)
    port = _free_port()
    sections = dict(part.section() for part in parts)
    config = config_model().model_validate(
        {"store": {"url": store.url}, "server": {"host": "127.0.0.1", "port": port}, **sections}
    )
    # As `leadsync run` does: the change feed's subscribers (fan-out, the plugins' own
    # such as Conversion Leads), for the demo's store.
    from connector.sync import fanout

    fanout.connect(config, store.engine)
    daemon = Daemon(config, store, plugins)
    thread = threading.Thread(target=daemon.run, name="leadsync-demo-daemon", daemon=True)
    url = f"http://127.0.0.1:{port}"
    try:
        thread.start()
        _wait_healthy(url, thread)
        for part in parts:
            console.print(f"[bold]{part.title}[/]: started; the daemon listens on {url}")
            part.start(url)
        started = time.monotonic()
        live_view = console.is_terminal
        last_line = -10.0
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while (elapsed := time.monotonic() - started) < seconds:
                for part in parts:
                    part.tick(elapsed)
                now = counts(store)
                if live_view:
                    live.update(_table(now, elapsed, seconds))
                elif elapsed - last_line >= 5:
                    last_line = elapsed
                    leads_total = sum(now["leads"].values())
                    console.print(
                        f"{elapsed:4.0f} s: {now['contacts']} contacts, {leads_total} leads, "
                        f"{now['quarantined']} quarantined, {now['webhooks']} webhooks"
                    )
                time.sleep(0.5)
            if live_view:
                live.update(_table(counts(store), seconds, seconds))
    finally:
        daemon.stopping.set()
        thread.join(60)
        for part in parts:
            for line in part.summary():
                console.print(f"  {line}")
            part.stop()
    return counts(store)


def _wait_healthy(url: str, thread: threading.Thread, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive():
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError("the demo's daemon did not start; run with -v to see why")
