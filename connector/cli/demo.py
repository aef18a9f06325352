"""`leadsync demo`: the whole loop on a throwaway store."""

from __future__ import annotations

from pathlib import Path

import typer
import typer.main

from connector.cli import (
    app,
    contacts_table,
    invoked_as,
    out,
)
from connector.ports import plugins
from connector.store import contacts as contact_store
from connector.store import open_store

# -- demo -------------------------------------------------------------------------------


@app.command("demo")
def demo(
    ctx: typer.Context,
    workdir: Path | None = typer.Option(
        None, help="Keep the demo store here (default: a temp dir)."
    ),
    seconds: float = typer.Option(30.0, help="How long the daemon runs against the emulators."),
) -> None:
    """The whole loop on a throwaway SQLite store: a CSV import, then the real daemon
    against local emulators of the ad platform, with leads arriving by webhook."""
    import tempfile

    from connector.runtime.demo import run_live

    base = workdir or Path(tempfile.mkdtemp(prefix="leadsync-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{base / 'demo.db'}"
    store = open_store(url)
    out.print(f"[bold]leadsync demo[/] store: {url}")
    installed = plugins()
    steps = sorted(
        (
            (getattr(p, "demo_order", 100), name, p)
            for name, p in installed.items()
            if hasattr(p, "demo")
        ),
        key=lambda item: (item[0], item[1]),
    )
    for _order, _name, plugin in steps:
        plugin.demo(store, base, out)
    final = run_live(store, installed, seconds, out)
    total, rows = contact_store.list_contacts(store, limit=25)
    out.print(contacts_table(rows, f"{total} contacts (newest 25)"))
    counts = contact_store.counts(store)
    open_quarantine = counts.pop("quarantine", 0)
    out.print("contacts by status: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    out.print(f"quarantine: {open_quarantine} open records (not contacts: nothing identifies them)")
    out.print(
        "leads by source: "
        + ", ".join(f"{k} {v}" for k, v in sorted(final["leads"].items()))
        + f"; webhooks received: {final['webhooks']}"
    )
    me = invoked_as()
    some = rows[-1]["id"] if rows else 1
    out.print(
        f"\nLook around (as printed; or `source .venv/bin/activate` and drop the path):\n"
        f"  {me} --store {url} contacts list\n"
        f"  {me} --store {url} contacts show {some}\n"
        f"  {me} --store {url} quarantine list\n"
        f"  {me} --store {url} status",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
