"""`leadsync config ...`, `db upgrade`, `statuses list`: the admin's checks of the YAML,
the schema and the catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import typer.main
from rich.table import Table

from connector.cli import (
    GROUPS,
    err,
    out,
    print_json,
    state,
)
from connector.config import (
    ConfigError,
    LeadsyncConfig,
    config_model,
    json_schema,
    load_config,
    validate_file,
)
from connector.store import contacts as contact_store
from connector.store import open_store

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
    warnings = checks.status_warnings(config)
    if warnings:
        err.print(f"warning: {checks.render(warnings, path)}", highlight=False, soft_wrap=True)
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
