"""The `leadsync` command. Adapters add their own commands through `ports.Plugin`."""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
import typer.main
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connector import logs, normalize
from connector.config import (
    ConfigError,
    LeadsyncConfig,
    config_model,
    json_schema,
    load_config,
    validate_file,
)
from connector.pipeline import IngestStats, retry_quarantine
from connector.ports import SourceError, plugins
from connector.statuses import UnknownStatusError
from connector.store import Store, StoreError, open_store
from connector.store import contacts as contact_store

app = typer.Typer(
    help="leadsync: one contact store for every lead source, kept in sync both ways.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

GROUPS: dict[str, typer.Typer] = {
    "import": typer.Typer(help="Import leads from files.", no_args_is_help=True),
    "contacts": typer.Typer(help="Look at and edit contacts.", no_args_is_help=True),
    "quarantine": typer.Typer(help="Records that could not be ingested.", no_args_is_help=True),
    "config": typer.Typer(help="Check the YAML configuration.", no_args_is_help=True),
    "db": typer.Typer(help="The store's schema.", no_args_is_help=True),
    "statuses": typer.Typer(help="The status catalogue.", no_args_is_help=True),
    "fake": typer.Typer(help="Local emulators of the external APIs.", no_args_is_help=True),
    "backfill": typer.Typer(help="Read a source's history once.", no_args_is_help=True),
    "mapping": typer.Typer(help="Mapping files: a first draft from a file.", no_args_is_help=True),
}
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)

# Errors a user can fix; shown as one clear message, never a traceback.
USER_ERRORS = (ConfigError, StoreError, SourceError, UnknownStatusError, LookupError, ValueError)


@dataclass
class AppState:
    """What every command shares: where the config and the store are."""

    config_path: Path | None = None
    store_url: str | None = None
    _config: LeadsyncConfig | None = field(default=None, repr=False)

    def config(self) -> LeadsyncConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def store(self, *, existing: bool = False) -> Store:
        """The store; with `existing` (read-only commands) a SQLite file that does not
        exist yet is an error, not a new empty store left in the current directory."""
        config = self.config()
        url = self.store_url or config.store.url
        if existing:
            _refuse_missing_sqlite(url)
        return open_store(url, config.catalogue(), identity=config.identity.rules())


def _refuse_missing_sqlite(url: str | None) -> None:
    from sqlalchemy.engine import make_url

    from connector.store.engine import DEFAULT_URL

    parsed = make_url(url or DEFAULT_URL)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    if not Path(database).exists():
        raise StoreError(
            f"no store at {database}: nothing has been imported here yet "
            "(`leadsync import csv FILE`), or pass --store URL / set store.url"
        )


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppState)
    return obj


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", envvar="LEADSYNC_CONFIG", help="YAML config file."
    ),
    store: str | None = typer.Option(
        None, "--store", envvar="LEADSYNC_STORE_URL", help="Store URL (overrides the config)."
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output."),
) -> None:
    logs.configure(verbose)
    ctx.obj = AppState(config, store)


# -- shared output helpers (adapters use these too) -------------------------------------


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")


def print_stats(
    stats: IngestStats, title: str, as_json: bool, extra: dict[str, Any] | None = None
) -> None:
    """The summary every ingest command ends with."""
    summary = {**stats.as_dict(), **(extra or {})}
    if as_json:
        print_json(summary)
        return
    dry = bool(summary.get("dry_run"))
    table = Table(title=title, show_header=False)
    for key in (
        "rows",
        "created",
        "updated",
        "merged",
        "unchanged",
        "folded",
        "quarantined",
        "skipped",
    ):
        label = f"would be {key}" if dry and key not in ("rows", "skipped") else key
        table.add_row(label, str(summary[key]))
    if stats.resolved:
        table.add_row("quarantine closed", str(stats.resolved))
    table.add_row("seconds", f"{stats.seconds:.2f}")
    if stats.field_issues:
        table.add_row("field issues", str(stats.field_issues))
    out.print(table)
    if stats.field_reasons:
        fields = Table(title="Values left out (the contact is kept), by reason", show_header=True)
        fields.add_column("count", justify="right")
        fields.add_column("field: reason")
        for reason, count in stats.field_reasons.most_common(15):
            fields.add_row(str(count), reason)
        out.print(fields)
    if stats.reasons:
        from connector.store.quarantine import hint

        title = "Would be quarantined, by reason" if dry else "Quarantined, by reason"
        reasons = Table(title=title, show_header=True)
        reasons.add_column("count", justify="right")
        reasons.add_column("field: reason")
        for reason, count in stats.reasons.most_common(15):
            reasons.add_row(str(count), reason)
        out.print(reasons)
        hints = sorted({hint(reason).split(",")[0] for reason in stats.reasons})
        if dry:
            # Nothing was kept: there is no quarantine to list or retry yet.
            out.print(f"Dry run: nothing was quarantined. Before importing: {'; '.join(hints)}.")
        else:
            out.print(
                f"To do: {'; '.join(hints)}. See them with [bold]leadsync quarantine list[/]."
            )


@contextmanager
def progress_bar(total: int | None, enabled: bool) -> Iterator[Callable[[IngestStats], None]]:
    """A progress bar on a terminal (stderr); a no-op elsewhere."""
    if not enabled or not err.is_terminal:
        yield lambda _stats: None
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "created {task.fields[created]} merged {task.fields[merged]} "
            "quarantined {task.fields[quarantined]}"
        ),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("importing", total=total, created=0, merged=0, quarantined=0)

        def update(stats: IngestStats) -> None:
            bar.update(
                task,
                completed=stats.rows,
                created=stats.created,
                merged=stats.merged,
                quarantined=stats.quarantined,
            )

        yield update


def contacts_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    # At 80 columns the phone and id stay whole (a cut phone is a wrong phone); the
    # text columns fold instead.
    for column in ("id", "name", "email", "phone", "city", "country", "status"):
        whole = column in ("id", "phone")
        table.add_column(column, no_wrap=whole, overflow="ellipsis" if whole else "fold")
    for c in rows:
        name = " ".join(p for p in (c.get("first_name"), c.get("last_name")) if p)
        table.add_row(
            str(c["id"]),
            name,
            c.get("email") or "",
            c.get("phone") or "",
            c.get("city") or "",
            c.get("country") or "",
            c["status_name"],
        )
    return table


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
    for column in ("at", "from", "to", "origin", "actor"):
        history.add_column(column)
    for h in data["status_history"]:
        history.add_row(h["at"], h["from"] or "", h["to"], h["origin"], h["actor"] or "")
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
    """Move a contact to a status, as a person (any status is allowed)."""
    store = state(ctx).store()
    live = contact_store.set_status(store, contact_id, status, actor)
    out.print(f"contact {live} is now {store.catalogue.resolve(status).name}")


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


# -- config, db, statuses ---------------------------------------------------------------


@GROUPS["config"].command("validate")
def config_validate(
    ctx: typer.Context,
    file: Path | None = typer.Argument(
        None, metavar="[FILE]", help="Config or mapping file (default: the config)."
    ),
) -> None:
    """Check a config or mapping file as the daemon would at start and on SIGHUP:
    the schema, environment variables, schedules, mapping files and their status words.
    Errors name file:line and the field path, in the file's order."""
    from connector import checks
    from connector.config import DEFAULT_CONFIG, parse_yaml

    path = file or state(ctx).config_path or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if path is None:
        raise ConfigError(
            f"no file given, no --config / LEADSYNC_CONFIG and no ./{DEFAULT_CONFIG.name}"
        )
    data, _ = parse_yaml(path)
    if isinstance(data, dict) and "columns" in data:
        problems = checks.mapping_problems(path, _validate_catalogue(ctx, path))
        if problems:
            raise ConfigError("\n".join(p.message.removeprefix("mapping file ") for p in problems))
        out.print(f"{path}: valid mapping")
        return
    config = validate_file(path, config_model())
    _daemon_would_accept(config, path)
    out.print(f"{path}: valid config")


def _validate_catalogue(ctx: typer.Context, mapping: Path) -> Any:
    """The catalogue a mapping's status words must resolve in: the config's, if any."""
    from connector.statuses import Catalogue

    config_path = state(ctx).config_path
    if config_path is not None and config_path != mapping:
        return load_config(config_path).catalogue()
    return Catalogue.default()


def _daemon_would_accept(config: LeadsyncConfig, path: Path) -> None:
    """Build the jobs and routes exactly as `leadsync run` does, on a throwaway
    in-memory store (nothing is written anywhere)."""
    from connector.runtime.daemon import Daemon
    from connector.runtime.server import all_routes

    memory = open_store("sqlite://", config.catalogue(), upgrade=True)
    try:
        daemon = Daemon(config, memory, config_path=path)
        daemon.jobs()  # raises ConfigError naming every problem (connector/checks.py)
        all_routes(daemon, daemon.plugins)
    finally:
        memory.close()


@GROUPS["config"].command("schema")
def config_schema(
    mapping: bool = typer.Option(False, "--mapping", help="The mapping files' schema instead."),
) -> None:
    """Print the JSON Schema of the config (or of mapping files)."""
    from connector.checks import mapping_schema

    print_json(mapping_schema() if mapping else json_schema())


@GROUPS["db"].command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply pending migrations to the store."""
    app_state = state(ctx)
    config = app_state.config()
    store = open_store(app_state.store_url or config.store.url, config.catalogue(), upgrade=True)
    out.print(f"{store.url} is at revision {store.current_revision()}")


@GROUPS["statuses"].command("list")
def statuses_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """The statuses of this deployment with their contact counts."""
    store = state(ctx).store(existing=True)
    counts = contact_store.counts(store)
    rows = [
        {
            "id": s.id,
            "name": s.name,
            "rank": s.rank,
            "terminal": s.terminal,
            "contacts": counts.get(s.name, 0),
        }
        for s in store.catalogue
    ]
    unlisted = contact_store.unlisted_statuses(store)
    rows += [
        {"id": i, "name": None, "rank": None, "terminal": None, "contacts": n}
        for i, n in sorted(unlisted.items())
    ]
    if unlisted:
        err.print(f"warning: {contact_store.unlisted_advice(unlisted)}")
    if as_json:
        print_json(rows)
        return
    table = Table(title="statuses")
    for column in ("id", "name", "rank", "terminal", "contacts"):
        table.add_column(column)
    for r in rows:
        terminal = "" if r["terminal"] is None else ("yes" if r["terminal"] else "no")
        rank = "" if r["rank"] is None else str(r["rank"])
        name = str(r["name"] or "(not listed)")
        table.add_row(str(r["id"]), name, rank, terminal, str(r["contacts"]))
    out.print(table)


# -- match keys -------------------------------------------------------------------------


# The keys `match-keys` reads, and Meta's short names for them (its match key names).
MATCH_FIELDS = ("email", "phone", "first_name", "last_name", "city", "state", "zip",
                "country", "date_of_birth", "gender", "external_id")  # fmt: skip
META_ALIASES = {"em": "email", "ph": "phone", "fn": "first_name", "ln": "last_name",
                "ct": "city", "st": "state", "zp": "zip", "db": "date_of_birth",
                "dob": "date_of_birth", "ge": "gender", "gen": "gender",
                "extern_id": "external_id"}  # fmt: skip


def canonical_keys(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A record with Meta's short keys (`em`, `ph`, `fn`, `ct`...) renamed to the fields
    they mean, and an error for every key that is neither: never silently ignored."""
    fields: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in record.items():
        name = META_ALIASES.get(key.lower(), key.lower())
        if name not in MATCH_FIELDS:
            errors[key] = f"not a key match-keys reads; use one of {', '.join(MATCH_FIELDS)}"
        elif name in fields:
            errors[key] = f"{name} given twice"
        else:
            fields[name] = value
    return fields, errors


@app.command(
    "match-keys",
    epilog="Keys read: " + ", ".join(MATCH_FIELDS) + "; Meta's short names are accepted "
    "too (" + ", ".join(f"{k}={v}" for k, v in META_ALIASES.items()) + "). Any other key "
    "is reported in `errors`.",
)
def match_keys(
    region: str | None = typer.Option(
        None, "--region", metavar="CC", help="Default country (e.g. MY)."
    ),
) -> None:
    """Meta match keys for JSON lines on stdin: normalised value and SHA-256 per key,
    and the reason for every value that cannot be normalised."""
    region = region.upper() if region else None
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            print_json(
                {"line": number, "match_keys": {}, "errors": {"_": f"not a JSON object: {exc}"}}
            )
            continue
        fields, refused = canonical_keys(record)
        keys, errors = normalize.match_keys(fields, region)
        print_json({**record, "match_keys": keys, "errors": {**refused, **errors}})


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


def invoked_as() -> str:
    """How to run leadsync again as this process was run: `.venv/bin/leadsync` after
    the README's command, `leadsync` when it is on PATH, else `python -m connector`."""
    import shutil

    script = Path(sys.argv[0])
    if script.name == "leadsync":
        found = shutil.which("leadsync")
        if found and Path(found).resolve() == script.resolve():
            return "leadsync"
        try:
            return str(script.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    return f"{sys.executable} -m connector"


def _register_plugins() -> None:
    for plugin in plugins().values():
        register = getattr(plugin, "register_cli", None)
        if register is not None:
            register(GROUPS)


# The root's options, accepted after the subcommand too (`backfill facebook -c f.yaml`):
# those taking a value, and the flags.
GLOBAL_WITH_VALUE = ("--config", "-c", "--store")
GLOBAL_FLAGS = ("--verbose", "-v")


def global_options_first(args: list[str]) -> list[str]:
    """`args` with the root's options moved before the subcommand, where click reads
    them; everything after `--` is left as it is."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_WITH_VALUE:
            takes_next = "=" not in arg and index + 1 < len(args)
            front.extend(args[index : index + 2] if takes_next else [arg])
            index += 2 if takes_next else 1
            continue
        if arg in GLOBAL_FLAGS or re.fullmatch(r"-v+", arg):
            front.append(arg)
        else:
            rest.append(arg)
        index += 1
    return front + rest


def _readable_help(command: Any) -> None:
    """Placeholders people read (FILE..., N, TEXT; nothing for a flag) instead of
    `<bool>` or `<list[Path]>`, and each paragraph of a help text as one line."""
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    # Typer brings its own copy of click: its classes are recognised by what they have.
    for param in command.params:
        option = param.param_type_name == "option"
        if option and (getattr(param, "is_flag", False) or getattr(param, "count", False)):
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = _placeholder(param)
        if not option:
            _plain_argument(param)
    original = command.get_help_option

    def help_option(ctx: Any) -> Any:
        found = original(ctx)
        if found is not None:
            found.metavar = ""
        return found

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _readable_help(sub)


def _plain_argument(param: Any) -> None:
    """`FILE...` in the usage line and no `<list[Path]>` beside it."""
    word = str(param.metavar).removesuffix("...").strip("[]")
    param.metavar = word
    many = "..." if param.nargs != 1 else ""
    shown = f"{word}{many}" if param.required else f"[{word}]{many}"
    param._usage_display_name = lambda: shown
    param.display_type_rich = lambda ctx: None


_PLACEHOLDERS = {"int": "N", "float": "NUMBER", "Path": "FILE", "str": "TEXT"}


def _placeholder(param: Any) -> str:
    bare = getattr(param, "bare_type", None)
    kind = str(bare()) if callable(bare) else "str"
    many = kind.startswith("list[") or param.nargs != 1
    kind = kind.removeprefix("list[").removesuffix("]")
    word = _PLACEHOLDERS.get(kind, "TEXT")
    argument = param.param_type_name == "argument"
    if argument and word != "FILE":
        word = (param.name or "value").upper()
    return f"{word}..." if many else word


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    _register_plugins()
    command = typer.main.get_command(app)
    _readable_help(command)
    try:
        command.main(
            args=global_options_first(sys.argv[1:]), prog_name="leadsync", standalone_mode=True
        )
    except USER_ERRORS as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


# -- the daemon -------------------------------------------------------------------------


@app.command("run")
def run_daemon(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Run every job once, then exit."),
    host: str | None = typer.Option(None, "--host", help="Listen address (server.host)."),
    port: int | None = typer.Option(None, "--port", help="Listen port (server.port)."),
) -> None:
    """The daemon: scheduled jobs, webhooks, /healthz, /readyz and /metrics. SIGTERM or
    Ctrl-C finishes the batch in hand and exits; SIGHUP reloads the config."""
    from connector.runtime.daemon import Daemon

    if logs_verbosity(ctx) == 0:
        logs.configure(1)  # the daemon logs at INFO: counts and ids, nothing personal
    app_state = state(ctx)
    config = app_state.config()
    store = open_store(
        app_state.store_url or config.store.url,
        config.catalogue(),
        identity=config.identity.rules(),
    )
    kind: type[Any] = _once_report_class() if once else Daemon
    daemon = kind(config, store, config_path=app_state.config_path)
    try:
        if once and not daemon.jobs():
            where = app_state.config_path or "no config file"
            raise ConfigError(
                f"nothing is configured ({where}): no source section, so no job would run. "
                "Add one (see config/leadsync.example.yaml), or import files with "
                "`leadsync import csv`."
            )
        code = daemon.run(once=once, host=host, port=port)
    except OSError as exc:  # the port is taken, the address is not ours
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    if once:
        for line in daemon.summary():
            out.print(line, highlight=False, markup=False)
    raise typer.Exit(code)


def _once_report_class() -> type[Any]:
    from connector.runtime.daemon import Daemon

    class OnceReport(Daemon):
        """`run --once`: the daemon's jobs, each recording how it ended, for one line
        per job at the end (ok or failed, and the counts it returned)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.ended: dict[str, str] = {}
            self.names: list[str] = []

        def jobs(self) -> list[Any]:
            import dataclasses

            found = super().jobs()
            self.names = [j.id for j in found]
            return [dataclasses.replace(j, run=self._recording(j)) for j in found]

        def _recording(self, job: Any) -> Callable[[Any], Any]:
            def run(runtime: Any) -> Any:
                try:
                    result = job.run(runtime)
                except Exception as exc:
                    self.ended[job.id] = f"failed: {logs.describe(exc)}"
                    raise
                counts = (
                    ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, int | float))
                    if isinstance(result, dict)
                    else ""
                )
                self.ended[job.id] = f"ok ({counts})" if counts else "ok"
                return result

            return run

        def summary(self) -> list[str]:
            return [f"{name}: {self.ended.get(name, 'skipped')}" for name in self.names]

    return OnceReport


def _configured_jobs(app_state: AppState, store: Store) -> list[str]:
    """The job ids the config gives the daemon (listed before their first run)."""
    from connector.runtime.daemon import Daemon

    try:
        daemon = Daemon(app_state.config(), store, config_path=app_state.config_path)
        return [job.id for job in daemon.jobs()]
    except (ConfigError, ValueError, LookupError) as exc:
        err.print(f"warning: the config's jobs cannot be listed: {exc}", highlight=False)
        return []


def _short_stream(stream: str) -> str:
    """A stream as a person reads it: a file's name, not its absolute path."""
    return Path(stream).name if "/" in stream else stream


def readable_cursor(value: Any, now: Any) -> tuple[str, str]:
    """What a cursor means, by kind of source: a time-windowed source (`until`, epoch
    seconds) has read up to a moment and is that far behind now; a file has been read
    up to a row."""
    from datetime import UTC, datetime

    if isinstance(value, dict) and isinstance(value.get("until"), int | float):
        until = datetime.fromtimestamp(float(value["until"]), UTC)
        behind = _ago(until, now).removesuffix(" ago")
        note = " (a window is half done)" if value.get("window") else ""
        return until.strftime("%Y-%m-%d %H:%M:%S UTC") + note, behind
    if isinstance(value, dict) and "row" in value:
        return f"row {value['row']}", "-"
    return json.dumps(value, default=str)[:60], "-"


def logs_verbosity(ctx: typer.Context) -> int:
    params = ctx.find_root().params
    return int(params.get("verbose") or 0)


def _ago(when: Any, now: Any) -> str:
    if when is None:
        return "-"
    seconds = int((now - when).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    if seconds < 172800:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


@app.command("status")
def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """What every source, system and job last did: health, runs, cursors and lag, outbox
    depth and age, quarantine, pending webhook deliveries."""
    from datetime import UTC, datetime

    from connector.runtime import status as status_module

    app_state = state(ctx)
    store = app_state.store(existing=True)
    now = datetime.now(UTC)
    data = status_module.collect(store, now)
    data["configured_jobs"] = _configured_jobs(app_state, store)
    ran = {row["job_id"] for row in data["jobs"]}
    if as_json:
        print_json(data)
        return
    table = Table(title="sources and systems")
    for column in ("source", "state", "reason", "paused until", "last success"):
        table.add_column(column)
    for row in data["sources"]:
        table.add_row(
            row["source"],
            row["state"],
            row["reason"] or "",
            str(row["paused_until"] or ""),
            _ago(row["last_success_at"], now),
        )
    out.print(table)
    table = Table(title="jobs (last run)")
    for column in ("job", "started", "replica", "result", "message"):
        table.add_column(column)
    for row in data["jobs"]:
        result = {True: "ok", False: "failed", None: "running"}[row["ok"]]
        table.add_row(
            row["job_id"],
            _ago(row["started_at"], now),
            row["replica"],
            result,
            row["message"] or "",
        )
    for job_id in data["configured_jobs"]:
        if job_id not in ran:  # configured, and not run yet on any replica
            table.add_row(job_id, "never", "", "not run yet", "")
    out.print(table)
    table = Table(title="cursors")
    for column in ("source", "stream", "read up to", "behind", "moved"):
        table.add_column(column, overflow="fold")
    for row in data["cursors"]:
        read, behind = readable_cursor(row["value"], now)
        table.add_row(row["source"], _short_stream(row["stream"]), read, behind,
                      _ago(row["updated_at"], now))  # fmt: skip
    out.print(table)
    table = Table(title="outbox")
    for column in ("destination", "pending", "oldest", "failed"):
        table.add_column(column)
    for destination, entry in data["outbox"].items():
        table.add_row(
            destination, str(entry["pending"]), f"{entry['oldest_age']:.0f}s", str(entry["failed"])
        )
    out.print(table)
    out.print(
        f"quarantine: {data['quarantine_open']} open · field issues: "
        f"{data['field_issues_open']} open · webhook deliveries pending: "
        f"{data['webhooks_pending']}"
    )
    if data["webhooks_dead"]:
        table = Table(title="webhook dead letters (newest; failed too often, not retried)")
        for column in ("id", "source", "received", "attempts", "last error"):
            table.add_column(column)
        for row in data["webhooks_dead"]:
            table.add_row(
                str(row["id"]),
                row["source"],
                _ago(row["received_at"], now),
                str(row["attempts"]),
                row["error"] or "",
            )
        out.print(table)


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
            _ago(r["created_at"], now),
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
