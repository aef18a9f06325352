"""`leadsync views ...`: the saved views of the config, with how many contacts each holds."""

from __future__ import annotations

import typer
from rich.table import Table

from connector import segments
from connector.cli import GROUPS, app, out, print_json, state

GROUPS["views"] = typer.Typer(
    help="Saved views and segments (config `views:`).", no_args_is_help=True
)
app.add_typer(GROUPS["views"], name="views")


@GROUPS["views"].command("list")
def views_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """The configured views and segments, each with its filter and contact count."""
    config = state(ctx).config()
    store = state(ctx).store(existing=True)
    rows = [
        {
            "name": item.name,
            "kind": kind,
            "where": item.where,
            "count": segments.count(store, segments.Segment.of(item.where, store.catalogue)),
        }
        for kind, items in (("view", config.views), ("segment", config.segments))
        for item in items
    ]
    if as_json:
        for row in rows:
            print_json(row)
        return
    if not rows:
        out.print("no views: add `views:` to the config (README: Segments and views)")
        return
    table = Table(title="views")
    for column in ("name", "kind", "contacts", "where"):
        table.add_column(
            column, overflow="fold", justify="right" if column == "contacts" else "left"
        )
    for row in rows:
        table.add_row(str(row["name"]), str(row["kind"]), str(row["count"]), str(row["where"]))
    out.print(table)
