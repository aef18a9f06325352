"""`leadsync contacts ...`: look at contacts, merge, unmerge, duplicates, set a status."""

from __future__ import annotations

import json
from typing import Any

import typer
import typer.main
from rich.table import Table

from connector.cli import (
    GROUPS,
    contacts_table,
    out,
    print_json,
    state,
)
from connector.store import contacts as contact_store

# -- contacts ---------------------------------------------------------------------------


@GROUPS["contacts"].command("list")
def contacts_list(
    ctx: typer.Context,
    status: str | None = typer.Option(None, "--status", "-s", help="Status name or id."),
    limit: int = typer.Option(50, help="At most this many."),
    offset: int = typer.Option(0, help="Skip this many."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one contact each."),
) -> None:
    """Live contacts, newest first."""
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
) -> None:
    """Attributes, identities, status history, leads and timeline of one contact."""
    data = contact_store.show_contact(state(ctx).store(existing=True), contact_id)
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
    contact_id: int = typer.Argument(help="Contact id."),
    status: str = typer.Argument(help="Status name or id."),
    actor: str | None = typer.Option(None, help="Who moves it (kept in the history)."),
) -> None:
    """Move a contact to a status, as a person: any status, except one a connected
    system is authoritative for (sync.authoritative). The change goes to every
    connected two-way system."""
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
