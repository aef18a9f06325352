"""`leadsync contacts ...`: look at contacts, merge, unmerge, duplicates, set a status."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import typer
import typer.main
from rich.table import Table

from connector import normalize, segments
from connector.cli import (
    GROUPS,
    contacts_table,
    err,
    out,
    print_json,
    state,
)
from connector.segments import Segment, check_columns, check_sort, export
from connector.store import Store
from connector.store import contacts as contact_store

# -- contacts ---------------------------------------------------------------------------


@GROUPS["contacts"].command("list")
def contacts_list(
    ctx: typer.Context,
    status: str | None = typer.Option(None, "--status", "-s", help="Status name or id."),
    limit: int = typer.Option(50, help="At most this many."),
    offset: int = typer.Option(0, help="Skip this many."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one contact each."),
    view: str | None = typer.Option(None, "--view", help="A saved view (config `views:`)."),
    where: str | None = typer.Option(
        None, "--where", help="A filter: 'status >= Qualified and score >= 70'."
    ),
    sort: str | None = typer.Option(None, "--sort", help="e.g. status,-score,created,name"),
    columns: str | None = typer.Option(None, "--columns", help="e.g. id,name,owner,custom.budget"),
) -> None:
    """Live contacts, newest first; or those of a view or filter, sorted and paged."""
    if view or where or sort or columns:
        if status:
            raise ValueError("--status is for plain lists: write it in --where (status = X)")
        _list_segment(ctx, view, where, sort, columns, limit, offset, as_json)
        return
    store = state(ctx).store(existing=True)
    status_id = store.catalogue.resolve(status).id if status else None
    total, rows = contact_store.list_contacts(store, status_id, limit, offset)
    if as_json:
        for row in rows:
            print_json(row)
        return
    out.print(contacts_table(rows, f"{total} contacts" + (f" in {status}" if status else "")))


_SHOWN_APART = (
    "identities",
    "status_history",
    "leads",
    "merges",
    "interactions",
    "field_issues",
)

# What a lead's context says about the ad it came from: column -> context keys, the
# name first (people read names), else the id.
AD_CONTEXT = {
    "form": ("form_name", "form_id"),
    "ad": ("ad_name", "ad_id"),
    "ad set": ("adset_name", "adset_id"),
    "campaign": ("campaign_name", "campaign_id"),
    "platform": ("platform",),
}


def ad_context(context: Any) -> dict[str, str]:
    """The ad context of one lead (form, ad, ad set, campaign, platform), as given."""
    if not isinstance(context, dict):
        return {}
    found = {}
    for column, keys in AD_CONTEXT.items():
        value = next((context[k] for k in keys if context.get(k)), None)
        if value is not None:
            found[column] = str(value)
    if context.get("is_organic"):
        found.setdefault("ad", "(organic)")
    return found


@GROUPS["contacts"].command("show")
def contacts_show(
    ctx: typer.Context,
    contact_id: int = typer.Argument(help="Contact id (an absorbed id shows its survivor)."),
    as_json: bool = typer.Option(False, "--json"),
    kind: str | None = typer.Option(
        None, "--kind", help="Only the timeline, of these kinds: visit,message,status,form,note"
    ),
) -> None:
    """Attributes, identities, status history, leads and timeline of one contact."""
    data = contact_store.show_contact(state(ctx).store(existing=True), contact_id)
    if kind is not None:
        _show_timeline(data, kind, as_json)
        return
    if as_json:
        print_json(data)
        return
    if "merged_from" in data:
        out.print(f"[yellow]contact {contact_id} was merged into {data['id']}[/]")
    table = Table(title=f"contact {data['id']}", show_header=False)
    for key, value in data.items():
        if key not in _SHOWN_APART and value:
            table.add_row(
                key,
                json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value),
            )
    out.print(table)
    out.print("identities: " + ", ".join(i["key"] for i in data["identities"]))
    history = Table(title="status history")
    for column in ("at", "from", "to", "origin", "actor", "rule"):
        history.add_column(column)
    for h in data["status_history"]:
        to = h["to"] if h["accepted"] else f"{h['to']} (refused)"
        rule = h["rule"] or ""
        history.add_row(h["at"], h["from"] or "", to, h["origin"], h["actor"] or "", rule)
    out.print(history)
    leads = Table(title="leads")
    for column in ("source", "ref", "source id", "received"):
        leads.add_column(column)
    for lead in data["leads"]:
        leads.add_row(lead["source"], lead["ref"], lead["source_id"][:24], lead["received_at"])
    out.print(leads)
    if data["field_issues"]:
        issues = Table(title="field issues (values left out)")
        for column in ("id", "source", "record", "field", "reason", "value"):
            issues.add_column(column)
        for i in data["field_issues"]:
            issues.add_row(
                str(i["id"]), i["source"], i["ref"], i["field"], i["reason"], str(i["value"])
            )
        out.print(issues)
    ads = [(lead, ad_context(lead.get("context"))) for lead in data["leads"]]
    if any(found for _, found in ads):
        table = Table(title="ad context")
        for column in ("lead", *AD_CONTEXT):
            table.add_column(column, overflow="fold")
        for lead, found in ads:
            if found:
                table.add_row(lead["ref"], *(found.get(c, "") for c in AD_CONTEXT))
        out.print(table)
    for m in data["merges"]:
        undone = f" (undone {m['undone_at']})" if m["undone_at"] else ""
        out.print(
            f"{m['at']}  merged {m['absorbed']} into {m['survivor']}: {m['rule']}"
            f"{' by ' + m['actor'] if m['actor'] else ''}{undone}"
            + ("" if undone else f"  (undo: leadsync contacts unmerge {m['absorbed']})")
        )
    for item in data["interactions"]:
        out.print(f"{item['at']}  {item['kind']}  {json.dumps(item['data'], ensure_ascii=False)}")


@GROUPS["contacts"].command("merge")
def contacts_merge(
    ctx: typer.Context,
    survivor: int = typer.Argument(help="The contact that stays; its values win."),
    absorbed: int = typer.Argument(help="The contact folded into it."),
    actor: str | None = typer.Option(None, help="Who merges (kept in the timeline)."),
) -> None:
    """Fold ABSORBED into SURVIVOR."""
    kept = contact_store.merge_contacts(state(ctx).store(), survivor, absorbed, actor)
    out.print(f"merged {absorbed} into {kept}")


@GROUPS["contacts"].command("unmerge")
def contacts_unmerge(
    ctx: typer.Context,
    contact_id: int = typer.Argument(help="The absorbed contact to bring back."),
    actor: str | None = typer.Option(None, help="Who unmerges (kept in the timeline)."),
) -> None:
    """Undo the merge that absorbed CONTACT_ID: it comes back with its identities,
    leads, interactions and values."""
    restored, survivor = contact_store.unmerge(state(ctx).store(), contact_id, actor)
    out.print(f"contact {restored} is back, apart from {survivor}")


duplicates_app = typer.Typer(
    help="Contacts a shared key joined whose names clearly disagree: merge or dismiss.",
    invoke_without_command=True,
)
GROUPS["contacts"].add_typer(duplicates_app, name="duplicates")


@duplicates_app.callback()
def contacts_duplicates(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one pair each."),
    include_settled: bool = typer.Option(
        False, "--all", help="Also pairs dismissed, merged or since become one contact."
    ),
) -> None:
    """Possible duplicates, for a person to `contacts merge` or `duplicates dismiss`."""
    if ctx.invoked_subcommand is not None:
        return
    pairs = contact_store.duplicates(state(ctx).store(), include_settled)
    if as_json:
        for pair in pairs:
            print_json(pair)
        return
    table = Table(title=f"{len(pairs)} possible duplicates")
    for column in ("id", "shared", "contact", "name", "other", "other's name"):
        table.add_column(column)
    for pair in pairs:
        a, b = pair["contacts"]
        table.add_row(
            str(pair["id"]),
            pair["key"],
            str(a["id"]),
            " ".join(x for x in (a["first_name"], a["last_name"]) if x),
            str(b["id"]),
            " ".join(x for x in (b["first_name"], b["last_name"]) if x),
        )
    out.print(table)
    if pairs:
        out.print(
            "Same person? [bold]leadsync contacts merge SURVIVOR ABSORBED[/]. "
            "Not? [bold]leadsync contacts duplicates dismiss ID[/]."
        )


@duplicates_app.command("dismiss")
def contacts_duplicates_dismiss(
    ctx: typer.Context,
    pair_id: int = typer.Argument(help="The possible duplicate's id (from the list)."),
    actor: str | None = typer.Option(None, help="Who dismisses it."),
) -> None:
    """They are different people: stop offering the pair."""
    contact_store.dismiss_duplicate(state(ctx).store(), pair_id, actor)
    out.print(f"possible duplicate {pair_id} dismissed")


@GROUPS["contacts"].command("set-status")
def contacts_set_status(
    ctx: typer.Context,
    targets: list[str] = typer.Argument(
        metavar="ID STATUS", help="CONTACT_ID STATUS; with --where, STATUS alone."
    ),
    actor: str | None = typer.Option(None, help="Who moves it (kept in the history)."),
    where: str | None = typer.Option(
        None, "--where", help="Move every contact of this filter (bulk edit)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="With --where: show the count and a sample, change nothing."
    ),
) -> None:
    """Move a contact to a status, as a person: any status, except one a connected
    system is authoritative for (sync.authoritative); the change goes to every
    connected two-way system. With --where, every contact of a filter, after showing
    how many and a sample."""
    if where is not None or dry_run:
        if where is None or len(targets) != 1:
            raise ValueError("bulk edit: contacts set-status --where EXPR STATUS [--dry-run]")
        _set_status_where(ctx, where, targets[0], actor, dry_run)
        return
    if len(targets) != 2 or not targets[0].isdigit():
        raise ValueError("give CONTACT_ID STATUS (or --where EXPR STATUS)")
    contact_id, status = int(targets[0]), targets[1]
    from connector.sync import status as engine

    store = state(ctx).store()
    decision = engine.set_by_person(store, contact_id, status, actor)
    name = store.catalogue.resolve(status).name
    if not decision.accepted:
        owner = decision.rule.removeprefix("authoritative:")
        out.print(
            f"[red]refused[/]: contact {decision.contact_id} stays {decision.previous}; "
            f"{owner} decides {name} (sync.authoritative): change it there"
        )
        raise typer.Exit(1)
    out.print(f"contact {decision.contact_id} is now {name}")


# -- segments: lists, counts, exports and bulk edits by filter ------------------------


def _segment(
    ctx: typer.Context, store: Store, view: str | None, where: str | None
) -> tuple[Segment, str | None, list[str] | None]:
    """The filter of `--view` or `--where` (not both), with the view's sort and columns."""
    if view and where:
        raise ValueError("give --view or --where, not both")
    if view:
        chosen = state(ctx).config().view(view)
        return Segment.of(chosen.where, store.catalogue), chosen.sort, chosen.columns
    return Segment.of(where, store.catalogue), None, None


def _list_segment(
    ctx: typer.Context,
    view: str | None,
    where: str | None,
    sort: str | None,
    columns: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    store = state(ctx).store(existing=True)
    segment, view_sort, view_columns = _segment(ctx, store, view, where)
    order = check_sort(sort or view_sort)
    shown = check_columns(columns or view_columns)
    rows = segments.page(store, segment, order, shown, limit, offset)
    if as_json:
        for row in rows:
            print_json(row)
        return
    total = segments.count(store, segment)
    first = offset + 1 if rows else offset
    table = Table(title=f"{total} contacts ({first}-{offset + len(rows)} shown)")
    for column in shown:
        table.add_column(column, overflow="fold", no_wrap=column in ("id", "phone"))
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in shown))
    out.print(table)


@GROUPS["contacts"].command("count")
def contacts_count(
    ctx: typer.Context,
    view: str | None = typer.Option(None, "--view", help="A saved view (config `views:`)."),
    where: str | None = typer.Option(None, "--where", help="A filter expression."),
    as_json: bool = typer.Option(False, "--json", help='Print {"count": N}.'),
) -> None:
    """How many live contacts a view or filter holds (all of them without either)."""
    store = state(ctx).store(existing=True)
    segment, _, _ = _segment(ctx, store, view, where)
    found = segments.count(store, segment)
    if as_json:
        print_json({"count": found})
    else:
        out.print(str(found))


@GROUPS["contacts"].command("export")
def contacts_export(
    ctx: typer.Context,
    view: str | None = typer.Option(None, "--view", help="A saved view (config `views:`)."),
    where: str | None = typer.Option(None, "--where", help="A filter expression."),
    fmt: str = typer.Option("csv", "--format", help="csv or jsonl."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
    hashed: bool = typer.Option(
        False, "--hashed", help="Meta match keys (SHA-256) instead of raw values."
    ),
    sort: str | None = typer.Option(None, "--sort", help="e.g. -score,created"),
    columns: str | None = typer.Option(None, "--columns", help="e.g. id,name,email,custom.budget"),
) -> None:
    """Stream a view's or filter's contacts to CSV or JSON lines (flat memory however
    many match): for a sales team, or with --hashed for a manual audience upload."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"--format is csv or jsonl, not {fmt}")
    if hashed and columns:
        raise ValueError("--hashed writes Meta's match key columns; leave out --columns")
    store = state(ctx).store(existing=True)
    segment, view_sort, view_columns = _segment(ctx, store, view, where)
    order = check_sort(sort or view_sort)
    if hashed:
        header = list(normalize.MATCH_KEY_NAMES)
        rows: Iterator[list[Any]] = export.hashed_rows(store, segment, order)
    else:
        header = check_columns(columns or view_columns)
        rows = segments.query.values(store, segment, order, header)
    if output is None:
        written = export.write(rows, header, fmt, sys.stdout)
    else:
        with output.open("w", encoding="utf-8", newline="") as fh:
            written = export.write(rows, header, fmt, fh)
    err.print(f"{written} contacts exported" + (f" to {output}" if output else ""))


def _set_status_many(store: Store, ids: Iterable[int], status: str, actor: str | None) -> int:
    """Move every contact of `ids` to `status` as a person; how many were moved.

    The one place bulk status edits go through: one decision of the two-way engine per
    contact (its own transaction), so the rules (an authoritative system's statuses
    stay its own), the history and the fan-out to connected systems apply to bulk edits
    as to one. Refused contacts are not counted."""
    from connector.sync import status as engine

    moved = 0
    for contact_id in ids:
        moved += 1 if engine.set_by_person(store, contact_id, status, actor).accepted else 0
    return moved


# Contacts shown before a bulk edit, so a person sees who is about to change.
SAMPLE = 10


def _set_status_where(
    ctx: typer.Context, where: str, status: str, actor: str | None, dry_run: bool
) -> None:
    store = state(ctx).store(existing=dry_run)
    target = store.catalogue.resolve(status)
    segment = Segment.of(where, store.catalogue)
    found = segments.count(store, segment)
    sample = segments.page(store, segment, [], ["id", "name", "status", "owner"], SAMPLE)
    table = Table(title=f"{found} contacts would move to {target.name}")
    for column in ("id", "name", "status", "owner"):
        table.add_column(column)
    for row in sample:
        table.add_row(
            *("" if row[c] is None else str(row[c]) for c in ("id", "name", "status", "owner"))
        )
    out.print(table)
    if found > len(sample):
        out.print(f"... and {found - len(sample)} more")
    if dry_run:
        out.print("dry run: nothing changed")
        return
    # The ids are read first, in full: moving contacts while streaming the filter
    # would change what the filter selects under the cursor.
    moved = _set_status_many(store, list(segments.query.ids(store, segment)), target.name, actor)
    out.print(f"{moved} contacts moved to {target.name}")


def _show_timeline(data: dict[str, Any], kinds: str, as_json: bool) -> None:
    """One contact's timeline, only the kinds asked for (Callio's activity filter):
    interactions by their kind, `status` for status changes, `form` for leads."""
    wanted = {k.strip() for k in kinds.split(",") if k.strip()}
    items = export.timeline(data, wanted)
    if as_json:
        for item in items:
            print_json(item)
        return
    table = Table(title=f"contact {data['id']}: {', '.join(sorted(wanted))}")
    for column in ("at", "kind", "what"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(item["at"] or "", item["kind"], item["what"])
    out.print(table)


@GROUPS["contacts"].command("why")
def contacts_why(
    ctx: typer.Context,
    contact_id: int = typer.Argument(help="Contact id."),
    as_json: bool = typer.Option(False, "--json", help="The explanation as JSON."),
) -> None:
    """Why a contact has its status: the decision that set it, and what was refused
    since, from the status history."""
    from connector.sync.why import explain

    store = state(ctx).store(existing=True)
    found = explain(store, contact_id)
    if as_json:
        print_json(found)
        return
    for line in found["lines"]:
        out.print(line)
