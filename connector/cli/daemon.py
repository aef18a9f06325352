"""`leadsync run` and `leadsync status`: the daemon and what it has done."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
import typer.main
from rich.table import Table

from connector import logs
from connector.cli import (
    AppState,
    app,
    err,
    out,
    print_json,
    state,
)
from connector.config import (
    ConfigError,
)
from connector.store import Store, open_store

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
    from connector.runtime.daemon import installed_plugins
    from connector.sync import fanout

    # Status changes and new contacts fan out to the connected two-way systems (the
    # daemon's plugins: the installed ones and any test plugin); SIGHUP reconnects it.
    fanout.connect(config, plugins=installed_plugins())
    store = open_store(
        app_state.store_url or config.store.url,
        config.catalogue(),
        identity=config.identity.rules(),
    )
    kind: type[Any] = _once_report_class() if once else Daemon
    daemon = kind(config, store, config_path=app_state.config_path, fanout="process")
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
    up to a row; a sheet remembers the rows (or the statuses) it has seen, by key."""
    from datetime import UTC, datetime

    if isinstance(value, dict) and isinstance(value.get("until"), int | float):
        until = datetime.fromtimestamp(float(value["until"]), UTC)
        behind = ago(until, now).removesuffix(" ago")
        note = " (a window is half done)" if value.get("window") else ""
        return until.strftime("%Y-%m-%d %H:%M:%S UTC") + note, behind
    if isinstance(value, dict) and "row" in value:
        return f"row {value['row']}", "-"
    for kind in ("rows", "statuses"):
        if isinstance(value, dict) and isinstance(value.get(kind), dict):
            return f"{len(value[kind])} {kind} seen", "-"
    return json.dumps(value, default=str)[:60], "-"


def logs_verbosity(ctx: typer.Context) -> int:
    params = ctx.find_root().params
    return int(params.get("verbose") or 0)


def ago(when: Any, now: Any) -> str:
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
            ago(row["last_success_at"], now),
        )
    out.print(table)
    table = Table(title="jobs (last run)")
    for column in ("job", "started", "replica", "result", "message"):
        table.add_column(column)
    for row in data["jobs"]:
        result = {True: "ok", False: "failed", None: "running"}[row["ok"]]
        table.add_row(
            row["job_id"],
            ago(row["started_at"], now),
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
                      ago(row["updated_at"], now))  # fmt: skip
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
                ago(row["received_at"], now),
                str(row["attempts"]),
                row["error"] or "",
            )
        out.print(table)
