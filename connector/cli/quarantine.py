"""`leadsync quarantine ...`: records and values that could not be ingested."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import typer
import typer.main
from rich.table import Table

from connector.cli import (
    GROUPS,
    out,
    print_json,
    print_stats,
    state,
)
from connector.pipeline import retry_quarantine
from connector.ports import plugins

# -- quarantine -------------------------------------------------------------------------


class QuarantineKind(StrEnum):
    record = "record"
    field = "field"


@GROUPS["quarantine"].command("list")
def quarantine_list(
    ctx: typer.Context,
    include_resolved: bool = typer.Option(False, "--all", help="Also resolved records."),
    limit: int = typer.Option(50, "--limit", "-n", metavar="N", help="At most N (0: all)."),
    offset: int = typer.Option(0, "--offset", metavar="N", help="Skip the first N."),
    source: str | None = typer.Option(None, "--source", metavar="NAME", help="One source only."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one record each."),
    kind: QuarantineKind | None = typer.Option(
        None,
        "--kind",
        help="record: whole records nobody could identify or read; field: single values "
        "left out of an ingested contact. Both when absent.",
    ),
) -> None:
    """Open quarantined records and field issues with the field, the reason and what to
    do, oldest first."""
    from connector.store import quarantine as quarantine_store

    rows, total = quarantine_store.entries(
        state(ctx).store(existing=True),
        limit=limit or None,
        offset=offset,
        source=source,
        include_resolved=include_resolved,
        kind=kind.value if kind else None,
    )
    if as_json:
        for row in rows:
            print_json({**row, "hint": quarantine_store.hint(row["reason"])})
        return
    shown = f"{offset + 1}-{offset + len(rows)} of {total}" if rows else f"none of {total}"
    # One source (the usual case) is said once in the title: at 80 columns the reason,
    # which is what the admin acts on, needs the room.
    sources = {r["source"] for r in rows}
    single = next(iter(sources)) if len(sources) == 1 else None
    title = f"Quarantined records and field issues ({shown})"
    table = Table(title=f"{title} from {single}" if single else title)
    columns = ("id", "kind", *(() if single else ("source",)), "record", "field", "reason")
    for column in (*columns, "tries"):
        table.add_column(
            column,
            overflow="fold",
            no_wrap=column == "record",
            ratio=3 if column == "reason" else None,
        )
    for r in rows:
        # The first reason repeats the field column ("phone: ..."): said once is enough.
        reason = r["reason"].removeprefix(f"{r['field']}: ")
        reason += f" [{r['resolution']}]" if r.get("resolution") else ""
        values = {**r, "reason": reason, "tries": str(r["attempts"]), "id": str(r["id"])}
        table.add_row(*(values[c] for c in (*columns, "tries")))
    out.print(table)
    hints = sorted({quarantine_store.hint(r["reason"]) for r in rows if not r["resolved_at"]})
    for text in hints:
        out.print(f"To do: {text}.")
    if offset + len(rows) < total:
        out.print(f"More: [bold]--offset {offset + len(rows)}[/] (or --limit 0 for all).")


@GROUPS["quarantine"].command("dismiss")
def quarantine_dismiss(
    ctx: typer.Context,
    ids: list[int] = typer.Argument(None, metavar="[ID]...", help="Entries to dismiss."),
    source: str | None = typer.Option(
        None, "--source", metavar="NAME", help="Every open entry of this source."
    ),
    reason: str | None = typer.Option(
        None, "--reason", metavar="TEXT", help="Every open entry whose reason contains TEXT."
    ),
) -> None:
    """Close entries that will never be fixed; they stay in the store, marked dismissed."""
    from connector.store import quarantine as quarantine_store

    closed = quarantine_store.dismiss(state(ctx).store(), ids or (), source=source, reason=reason)
    out.print(f"dismissed {closed} quarantine entr{'y' if closed == 1 else 'ies'}")


@GROUPS["quarantine"].command("retry")
def quarantine_retry(
    ctx: typer.Context,
    source: str | None = typer.Option(None, help="Only this source."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Map quarantined records again with the current mapping and ingest those that pass."""
    app_state = state(ctx)
    store = app_state.store()
    adapters = plugins()

    def remap(raw: dict[str, Any], context: dict[str, Any], ref: str) -> Any:
        plugin = adapters.get(str(context.get("kind")))
        if plugin is None or not hasattr(plugin, "remap"):
            return None
        return plugin.remap(raw, {**context, "catalogue": store.catalogue}, ref)

    stats = retry_quarantine(
        store, remap, default_region=app_state.config().default_region, source=source
    )
    print_stats(stats, "quarantine retry", as_json)
