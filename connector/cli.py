"""The `leadsync` command. Adapters add their own commands through `ports.Plugin`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
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
from connector.mapping import Mapping
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

    def store(self) -> Store:
        config = self.config()
        return open_store(
            self.store_url or config.store.url,
            config.catalogue(),
            identity=config.identity.rules(),
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
        table.add_row(key, str(summary[key]))
    table.add_row("seconds", f"{stats.seconds:.2f}")
    out.print(table)
    if stats.reasons:
        reasons = Table(title="Quarantined, by reason", show_header=True)
        reasons.add_column("count", justify="right")
        reasons.add_column("field: reason")
        for reason, count in stats.reasons.most_common(15):
            reasons.add_row(str(count), reason)
        out.print(reasons)
        out.print(
            "See them with [bold]leadsync quarantine list[/]; fix the mapping, then "
            "[bold]leadsync quarantine retry[/]."
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
    for column in ("id", "name", "email", "phone", "city", "country", "status"):
        table.add_column(column)
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
    store = state(ctx).store()
    status_id = store.catalogue.resolve(status).id if status else None
    total, rows = contact_store.list_contacts(store, status_id, limit, offset)
    if as_json:
        for row in rows:
            print_json(row)
        return
    out.print(contacts_table(rows, f"{total} contacts" + (f" in {status}" if status else "")))


@GROUPS["contacts"].command("show")
def contacts_show(
    ctx: typer.Context,
    contact_id: int = typer.Argument(help="Contact id (an absorbed id shows its survivor)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Attributes, identities, status history, leads and timeline of one contact."""
    data = contact_store.show_contact(state(ctx).store(), contact_id)
    if as_json:
        print_json(data)
        return
    if "merged_from" in data:
        out.print(f"[yellow]contact {contact_id} was merged into {data['id']}[/]")
    table = Table(title=f"contact {data['id']}", show_header=False)
    for key, value in data.items():
        if key not in ("identities", "status_history", "leads", "merges", "interactions") and value:
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


@GROUPS["quarantine"].command("list")
def quarantine_list(
    ctx: typer.Context,
    include_resolved: bool = typer.Option(False, "--all", help="Also resolved records."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one record each."),
) -> None:
    """Open quarantined records with the field and reason."""
    rows = contact_store.quarantine_list(state(ctx).store(), include_resolved)
    if as_json:
        for row in rows:
            print_json(row)
        return
    table = Table(title=f"{len(rows)} quarantined records")
    for column in ("id", "source", "record", "field", "reason", "tries"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["id"]), r["source"], r["ref"], r["field"], r["reason"], str(r["attempts"])
        )
    out.print(table)


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
    file: Path | None = typer.Argument(None, help="Config or mapping file (default: the config)."),
) -> None:
    """Check a config or mapping file; errors name file:line and the field path."""
    from connector.config import DEFAULT_CONFIG

    path = file or state(ctx).config_path or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if path is None:
        raise ConfigError(
            f"no file given, no --config / LEADSYNC_CONFIG and no ./{DEFAULT_CONFIG.name}"
        )
    from connector.config import parse_yaml

    data, _ = parse_yaml(path)
    model: type[LeadsyncConfig] | type[Mapping] = (
        Mapping if isinstance(data, dict) and "columns" in data else config_model()
    )
    validate_file(path, model)
    out.print(f"{path}: valid {'mapping' if model is Mapping else 'config'}")


@GROUPS["config"].command("schema")
def config_schema(
    mapping: bool = typer.Option(False, "--mapping", help="The mapping files' schema instead."),
) -> None:
    """Print the JSON Schema of the config (or of mapping files)."""
    print_json(Mapping.model_json_schema() if mapping else json_schema())


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
    store = state(ctx).store()
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
        table.add_row(*(str(r[k]) for k in ("id", "name", "rank", "terminal", "contacts")))
    out.print(table)


# -- match keys -------------------------------------------------------------------------


@app.command("match-keys")
def match_keys(
    region: str | None = typer.Option(None, "--region", help="Default country (e.g. MY)."),
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
        keys, errors = normalize.match_keys(record, region)
        print_json({**record, "match_keys": keys, "errors": errors})


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
    out.print("by status: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    out.print(
        "leads by source: "
        + ", ".join(f"{k} {v}" for k, v in sorted(final["leads"].items()))
        + f"; webhooks received: {final['webhooks']}"
    )
    out.print(
        f"\nLook around:\n  leadsync --store {url} contacts list\n"
        f"  leadsync --store {url} contacts show {rows[-1]['id'] if rows else 1}\n"
        f"  leadsync --store {url} quarantine list\n"
        f"  leadsync --store {url} status"
    )


def _register_plugins() -> None:
    for plugin in plugins().values():
        register = getattr(plugin, "register_cli", None)
        if register is not None:
            register(GROUPS)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    _register_plugins()
    try:
        app()
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
    daemon = Daemon(config, store, config_path=app_state.config_path)
    try:
        code = daemon.run(once=once, host=host, port=port)
    except OSError as exc:  # the port is taken, the address is not ours
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    raise typer.Exit(code)


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

    store = state(ctx).store()
    now = datetime.now(UTC)
    data = status_module.collect(store, now)
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
    out.print(table)
    table = Table(title="cursors")
    for column in ("source", "stream", "value", "lag"):
        table.add_column(column)
    for row in data["cursors"]:
        table.add_row(
            row["source"],
            row["stream"],
            json.dumps(row["value"], default=str)[:60],
            _ago(row["updated_at"], now),
        )
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
        f"quarantine: {data['quarantine_open']} open · webhook deliveries pending: "
        f"{data['webhooks_pending']}"
    )
