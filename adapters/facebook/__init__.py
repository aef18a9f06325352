"""Facebook Lead Ads: poll and webhook jobs for the daemon, `backfill facebook`,
`fake facebook` (the local Graph API emulator), and quarantine retries."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from collections.abc import Mapping as MappingABC
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

import structlog
import typer
from starlette.routing import BaseRoute

from adapters.facebook import audience_jobs
from adapters.facebook.config import FacebookConfig
from adapters.facebook.leads import DEFAULT_MAPPING, to_lead
from adapters.facebook.source import RETENTION_DAYS, FacebookSource, Form
from adapters.facebook.webhook import DRAIN_JOB, drain, fetch_pool, routes
from connector.sdk import (
    Batch,
    Catalogue,
    IngestStats,
    Job,
    Lead,
    Pipeline,
    Runtime,
    SourceCase,
    SourceError,
    Store,
    describe,
    err,
    load_mapping_cached,
    print_stats,
    read_health,
    report_health,
    state,
)

log = structlog.get_logger(__name__)


def section(config: Any) -> FacebookConfig | None:
    found = getattr(config, "facebook", None)
    return found if isinstance(found, FacebookConfig) else None


class FacebookPlugin:
    name = "facebook"
    config_key = "facebook"
    config_model = FacebookConfig
    demo_order = 20

    def __init__(self) -> None:
        self._sources: dict[int, FacebookSource] = {}
        self._fetchers: ThreadPoolExecutor | None = None

    def source(self, runtime: Runtime, config: FacebookConfig) -> FacebookSource:
        """One source per runtime and config, so pauses and caches last between runs."""
        key = id(config)
        if key not in self._sources:
            self._sources[key] = FacebookSource(
                config,
                runtime.store.catalogue,
                stopping=runtime.stopping,
                report=runtime.report,
            )
        return self._sources[key]

    def jobs(self, runtime: Runtime) -> Sequence[Job]:
        config = section(runtime.config)
        if config is None:
            return []
        region = getattr(runtime.config, "default_region", None)

        def pipeline() -> Pipeline:
            return Pipeline(runtime.store, default_region=region, workers=0)

        def poll(rt: Runtime) -> None:
            source = self.source(rt, config)
            source.restore({row["source"]: row for row in read_health(rt.store)})
            pipeline = Pipeline(rt.store, default_region=region)
            # One form at a time: a form whose leads cannot be stored fails alone (its
            # cursor stays, so none of its leads is skipped), and the forms after it
            # are still polled. Its Page is reported failing once every form is read
            # (a later form of the same Page would otherwise report it fine again).
            failed: dict[str, str] = {}
            for stream in source.streams():
                try:
                    pipeline.run(source, [stream])
                except Exception as exc:
                    failed[stream] = describe(exc)
                    log.warning("facebook.form_failed", form=stream, error=failed[stream])
            forms = source.forms()
            for stream, why in failed.items():
                page = forms[stream].page_id if stream in forms else "?"
                rt.report(f"{source.name}:{page}", "failing", f"form {stream}: {why}")
            if failed:
                raise RuntimeError(
                    f"{len(failed)} form(s) could not be stored: {sorted(failed)}; "
                    "the other forms were polled"
                )

        def webhooks(rt: Runtime) -> None:
            source = self.source(rt, config)
            if self._fetchers is None:
                self._fetchers = fetch_pool()  # idle threads cost nothing but a stack
            drain(rt, source, pipeline, self._fetchers)

        jitter = min(30.0, config.poll_every / 10)
        return [
            Job("facebook.poll", poll, every=config.poll_every, jitter=jitter),
            # Deliveries wake this job at once; the interval only sweeps up leftovers.
            Job(DRAIN_JOB, webhooks, every=30.0),
            *audience_jobs.jobs(runtime, config),
        ]

    def destinations(self, runtime: Runtime) -> Sequence[Any]:
        """Conversion Leads' "meta-conversions", when `facebook.conversions` is set."""
        from adapters.facebook.conversions_delivery import destinations

        return destinations(section(runtime.config), runtime.report)

    def subscribers(self, config: Any) -> list[tuple[str, Any]]:
        """Conversion Leads' change-feed subscriber (every process that changes
        statuses writes the events in the change's transaction)."""
        from adapters.facebook.conversions import subscribers

        return subscribers(config)

    def routes(self, runtime: Runtime) -> Sequence[BaseRoute]:
        config = section(runtime.config)
        return routes(runtime, config) if config is not None else []

    def contract_source(self, workdir: Path) -> SourceCase:
        """The contract suite's case: the Graph API emulator with a Page of six leads
        (adapters/facebook/contract.py)."""
        from adapters.facebook.contract import FacebookCase

        return FacebookCase()

    def demo_live(self) -> Any:
        """The Graph API emulator with a Page of messy leads, for `leadsync demo`."""
        from adapters.facebook.demo import FacebookDemo

        return FacebookDemo()

    def register_cli(self, groups: dict[str, typer.Typer]) -> None:
        groups["backfill"].command("facebook")(backfill_facebook)
        groups["fake"].command("facebook")(fake_facebook)
        audience_jobs.register(groups)

    def remap(self, raw: MappingABC[str, Any], context: MappingABC[str, Any], ref: str) -> Lead:
        form_mappings = context.get("form_mappings") or {}
        path = form_mappings.get(str(raw.get("form_id"))) or context.get("mapping")
        mapping = load_mapping_cached(Path(path)) if path else DEFAULT_MAPPING
        catalogue = context.get("catalogue") or Catalogue.default()
        return to_lead(
            dict(raw),
            source=str(context.get("source") or "facebook"),
            mapping=mapping,
            catalogue=catalogue,
            region=context.get("region"),
        )


class Backfill:
    """A Facebook source read over a fixed range: one stream per form, each with a
    cursor of its own, so a stopped backfill continues where it stopped."""

    def __init__(
        self,
        source: FacebookSource,
        forms: list[Form],
        since: float,
        until: float,
        label: str | None = None,
    ) -> None:
        self.source = source
        self.forms = {f.id: f for f in forms}
        self.since, self.until = since, until
        # The range as the user gave it ("2026-09-01..now"): a rerun with the same
        # arguments finds the same cursors even though "now" has moved.
        self.label = label or f"{int(since)}..{int(until)}"
        self.name = source.name
        self.finished: set[str] = set()

    def check(self) -> None:
        self.source.check()

    def context(self) -> dict[str, Any]:
        return self.source.context()

    def streams(self) -> list[str]:
        return [f"backfill:{self.label}:{f}" for f in sorted(self.forms)]

    def read(self, stream: str, cursor: Any) -> Iterator[Batch]:
        form = self.forms[stream.rsplit(":", 1)[1]]
        # A resumed backfill keeps the range it started with.
        until = (
            float(cursor["until"]) if isinstance(cursor, dict) and "until" in cursor else self.until
        )
        yield from self.source.backfill(form, self.since, until, cursor)
        stopped = self.source.stopping is not None and self.source.stopping.is_set()
        if self.source.available(form.page_id) and not stopped:
            # Read to the end: not cut short by an error or by SIGTERM.
            self.finished.add(form.id)


def _day(value: str, end: bool = False) -> float:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None
    moment = datetime.combine(day, dtime.max if end else dtime.min, tzinfo=UTC)
    return moment.timestamp()


def backfill_facebook(
    ctx: typer.Context,
    since: str = typer.Option(..., help="First day to read (YYYY-MM-DD, UTC)."),
    until: str | None = typer.Option(None, help="Last day to read (default: today)."),
    page: list[str] = typer.Option([], "--page", help="Only this Page (repeatable)."),
    form: list[str] = typer.Option([], "--form", help="Only this form (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Do everything, then roll back."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Read the lead forms' history once. Stop it and run it again: it continues."""
    app_state = state(ctx)
    config = app_state.config()
    fb = section(config)
    if fb is None:
        raise SourceError("the config has no facebook section (see leadsync config schema)")
    start, end = _day(since), (_day(until, end=True) if until else time.time())
    if start > end:
        raise typer.BadParameter("--since is after --until")
    oldest = time.time() - RETENTION_DAYS * 86400
    if start < oldest:
        err.print(
            f"[yellow]warning:[/] --since reaches back past the ~{RETENTION_DAYS} days "
            "Meta keeps leads: older leads may no longer be downloadable",
            highlight=False,
        )
    store = app_state.store()
    held: list[tuple[str, Any, str | None]] = []

    def report(name: str, st: Any, reason: str | None = None, **kw: Any) -> None:
        if dry_run:
            # A dry run writes nothing, health included; on SQLite a write here, beside
            # the dry run's open transaction, would also wait on its lock ("database is
            # locked"). What would have been reported is shown at the end instead.
            held.append((name, st, reason))
            return
        report_health(store, name, st, reason, **kw)

    source = FacebookSource(fb, store.catalogue, report=report)
    source.check()
    source.discover(statuses=("ACTIVE", "ARCHIVED", "PAUSED", "DRAFT"), force=True)
    forms = [
        f
        for f in source.forms().values()
        if (not page or f.page_id in page) and (not form or f.id in form)
    ]
    if form and not forms:
        raise SourceError(f"no form {', '.join(form)} on the configured Pages")
    job = Backfill(source, forms, start, end, label=f"{since}..{until or 'now'}")
    stats = _run_backfill(store, job, config, dry_run, as_json)
    for name, st, reason in held:
        if st != "ok":
            err.print(f"[yellow]{name}: {st}[/] {reason or ''}", highlight=False)
    title = "backfill facebook" + (" (dry run: nothing was written)" if dry_run else "")
    print_stats(
        stats,
        title,
        as_json,
        {"dry_run": dry_run, "forms": len(forms), "api_calls": source.calls, "source": fb.source},
    )


def _run_backfill(
    store: Store, job: Backfill, config: Any, dry_run: bool, as_json: bool
) -> IngestStats:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    pipeline_args: dict[str, Any] = {
        "default_region": getattr(config, "default_region", None),
        "dry_run": dry_run,
    }
    if as_json or not err.is_terminal:
        return Pipeline(store, **pipeline_args).run(job)
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]backfill[/] {task.fields[leads]} leads"),
        TextColumn("forms {task.completed}/{task.total}"),
        TextColumn("API calls {task.fields[calls]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("backfill", total=len(job.forms), leads=0, calls=0)

        def update(stats: IngestStats) -> None:
            bar.update(task, completed=len(job.finished), leads=stats.rows, calls=job.source.calls)

        stats = Pipeline(store, progress=update, **pipeline_args).run(job)
        bar.update(task, completed=len(job.forms), leads=stats.rows, calls=job.source.calls)
        return stats


def fake_facebook(
    port: int = typer.Option(8788, help="Port to listen on (127.0.0.1)."),
    pages: int = typer.Option(1, help="Pages to create."),
    forms: int = typer.Option(2, help="Forms per Page."),
    leads: int = typer.Option(50, help="Leads per form."),
    webhook_url: str | None = typer.Option(None, help="Deliver leadgen webhooks here."),
    latency: float = typer.Option(0.0, help="Seconds added to every response."),
    seed: int = typer.Option(0, help="Seed of the generated data."),
) -> None:
    """Run the local Graph API emulator, to try mappings without touching production."""
    from adapters.facebook.fake import serve

    serve(
        port,
        pages=pages,
        forms=forms,
        leads=leads,
        webhook_url=webhook_url,
        latency=latency,
        seed=seed,
    )


plugin = FacebookPlugin()

__all__ = ["Backfill", "Batch", "FacebookPlugin", "plugin"]
