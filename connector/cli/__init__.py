"""The `leadsync` command. Adapters add their own commands through `ports.Plugin`."""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
import typer.main
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connector import logs
from connector.config import (
    ConfigError,
    LeadsyncConfig,
    load_config,
)
from connector.pipeline import IngestStats
from connector.ports import SourceError, plugins
from connector.statuses import UnknownStatusError
from connector.store import Store, StoreError, open_store

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
        # Before the store opens: a catalogue change applied at open fans out too.
        from connector.sync import fanout

        fanout.connect(config)
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


# The commands, registered on `app` and GROUPS as their modules load.
from connector.cli import (  # noqa: E402
    contacts,
    daemon,
    demo,
    matchkeys,
    outbox,
    quarantine,
    setup,
)

__all__ = [
    "GROUPS",
    "USER_ERRORS",
    "AppState",
    "app",
    "contacts",
    "contacts_table",
    "daemon",
    "demo",
    "err",
    "invoked_as",
    "main",
    "matchkeys",
    "out",
    "outbox",
    "print_json",
    "print_stats",
    "progress_bar",
    "quarantine",
    "setup",
    "state",
]
