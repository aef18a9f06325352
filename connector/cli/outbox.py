"""`leadsync outbox ...`: outbound effects waiting, delivered or failed."""

from __future__ import annotations

from typing import Any

import typer
import typer.main
from rich.table import Table

from connector.cli import (
    app,
    out,
    print_json,
    state,
)
from connector.cli.daemon import ago

# -- outbox: outbound effects waiting, delivered or failed (connector/sync/outbox_admin) --

outbox_app = typer.Typer(
    help="Outbound effects: what waits, what was delivered, dead letters.", no_args_is_help=True
)
app.add_typer(outbox_app, name="outbox")


def _print_outcome(outcome: Any, verb: str, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                verb: outcome.done,
                "skipped": {str(k): v for k, v in outcome.skipped.items()},
                "notes": {str(k): v for k, v in outcome.notes.items()},
            }
        )
    else:
        shown = ", ".join(map(str, outcome.done[:50])) + (" …" if len(outcome.done) > 50 else "")
        out.print(f"{verb} {len(outcome.done)}" + (f": {shown}" if outcome.done else ""))
        for row_id, reason in outcome.skipped.items():
            out.print(f"  skipped {row_id}: {reason}")
        for row_id, note in outcome.notes.items():
            out.print(f"  note {row_id}: {note}")
    if outcome.skipped and not outcome.done:
        raise typer.Exit(1)


@outbox_app.command("list")
def outbox_list(
    ctx: typer.Context,
    destination: str | None = typer.Option(None, "--destination", "-d", help="Only this one."),
    row_state: str | None = typer.Option(
        None, "--state", help="pending, failed (dead letters), delivered or dismissed."
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="At most this many rows."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines with payloads, one row each."),
) -> None:
    """Outbox rows: pending ones oldest first, the others newest first."""
    from connector.sync import outbox_admin

    store = state(ctx).store()
    chosen = outbox_admin.parse_state(row_state)
    found = outbox_admin.listing(store, destination, chosen, limit, with_payload=as_json)
    if as_json:
        for row in found:
            print_json(row)
        return
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    title = f"{len(found)} outbox rows" + (f" ({row_state})" if row_state else "")
    table = Table(title=title)
    for column in ("id", "destination", "kind", "contact", "state", "tries", "created", "error"):
        table.add_column(column)
    for r in found:
        table.add_row(
            str(r["id"]),
            r["destination"],
            r["kind"],
            str(r["contact_id"] or ""),
            r["state"],
            str(r["attempts"]),
            ago(r["created_at"], now),
            (r["last_error"] or "")[:80],
        )
    out.print(table)


@outbox_app.command("retry")
def outbox_retry(
    ctx: typer.Context,
    ids: list[int] | None = typer.Argument(None, help="Row ids (see `outbox list`)."),
    destination: str | None = typer.Option(
        None, "--destination", "-d", help="Every dead letter and backing-off row of it."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Deliver rows again now: dead letters start a fresh count of attempts."""
    from connector.sync import outbox_admin

    outcome = outbox_admin.retry(state(ctx).store(), ids or (), destination)
    _print_outcome(outcome, "retried", as_json)


@outbox_app.command("dismiss")
def outbox_dismiss(
    ctx: typer.Context,
    ids: list[int] = typer.Argument(..., help="Row ids (see `outbox list`)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Set rows aside for good (dead letters, or pending rows nobody is delivering)."""
    from connector.sync import outbox_admin

    _print_outcome(outbox_admin.dismiss(state(ctx).store(), ids), "dismissed", as_json)
