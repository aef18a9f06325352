"""Custom audiences in the daemon and on the command line: the `facebook.audiences` job
and `leadsync audiences plan|push|status`."""

from __future__ import annotations

from typing import Any

import typer

from adapters.facebook.audiences import HEALTH, Pusher, ads_graph, advice, plan
from adapters.facebook.config import FacebookConfig
from adapters.facebook.errors import GraphError
from connector.sdk import (
    Job,
    Runtime,
    Store,
    audience_state,
    out,
    print_json,
    read_health,
    report_health,
    state,
)

JOB = "facebook.audiences"


def pusher(store: Store, config: FacebookConfig) -> Pusher:
    audiences = config.audiences
    if audiences is None:
        raise ValueError("no facebook.audiences section in the config")
    graph = ads_graph(
        config, audiences.account, "audiences", "with ads_management on the ad account"
    )
    return Pusher(store, graph, audiences)


def jobs(runtime: Runtime, config: FacebookConfig) -> list[Job]:
    """The push job, when audiences are configured."""
    if config.audiences is None or not config.audiences.sets:
        return []

    def push(rt: Runtime) -> dict[str, int]:
        job = pusher(rt.store, config)
        totals = {"added": 0, "removed": 0, "calls": 0}
        for audience in config.audiences.sets if config.audiences else []:
            result = job.push(audience)
            for key in totals:
                totals[key] += int(result.get(key) or 0)
        return totals

    return [Job(JOB, push, every=config.audiences.push_every, jitter=30.0)]


def register(groups: dict[str, typer.Typer]) -> None:
    group = groups["audiences"]
    group.command("plan")(audiences_plan)
    group.command("push")(audiences_push)
    group.command("status")(audiences_status)


def _section(ctx: typer.Context) -> tuple[Store, FacebookConfig]:
    app = state(ctx)
    found = getattr(app.config(), "facebook", None)
    if not isinstance(found, FacebookConfig) or found.audiences is None:
        raise ValueError("no facebook.audiences section in the config (see README: Audiences)")
    return app.store(existing=True), found


_FULL = typer.Option(
    False, "--full", help="Hash every member again instead of reading only what changed."
)


def audiences_plan(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json"), full: bool = _FULL
) -> None:
    """Per audience: members to add and remove, and the calls a push would make. No call
    is made."""
    store, config = _section(ctx)
    assert config.audiences is not None
    rows = plan(store, config.audiences, full=full)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        extra = " (an exclusion audience)" if r["exclusion"] else ""
        out.print(
            f"{r['audience']}{extra}: {r['adds']} to add, {r['removes']} to remove, "
            f"{r['calls']} call(s)",
            highlight=False,
        )


def audiences_push(
    ctx: typer.Context,
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Send every member again in one replace session."
    ),
    as_json: bool = typer.Option(False, "--json"),
    full: bool = _FULL,
) -> None:
    """Send each audience's difference (or, with --rebuild, all its members)."""
    store, config = _section(ctx)
    job = pusher(store, config)
    results = [
        job.push(a, rebuild=rebuild, full=full)
        for a in (config.audiences.sets if config.audiences else [])
    ]
    if as_json:
        print_json(results)
        return
    for r in results:
        out.print(", ".join(f"{k} {v}" for k, v in r.items() if v is not None), highlight=False)


def audiences_status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """What each audience holds as far as leadsync sent it, Meta's approximate size, what
    Meta said of the last batches (received, invalid, samples of why), removals deferred
    because the audience is too small, and an error a person must act on (the token,
    a permission) with what to do."""
    store, config = _section(ctx)
    job = pusher(store, config)
    health = {row["source"]: row for row in read_health(store)}
    found: list[dict[str, Any]] = []
    for audience in config.audiences.sets if config.audiences else []:
        ids = job.ids(audience.name)
        size: dict[str, Any] = {}
        row = health.get(f"{HEALTH}:{audience.name}") or {}
        problem = row.get("reason") if row.get("state") == "failing" else None
        if ids.get("id"):
            try:
                size = job.graph.get(
                    ids["id"],
                    params={
                        "fields": "approximate_count_lower_bound,approximate_count_upper_bound"
                    },
                )
            except GraphError as exc:
                todo = advice(exc, job.audiences.account)
                if todo is None:
                    raise
                problem = todo  # what the status call itself met is the newest word
                report_health(store, f"{HEALTH}:{audience.name}", "failing", todo)
        with audience_state.read(store) as conn:
            sent = audience_state.members(conn, audience.name)
            last = audience_state.last_pushes(conn, audience.name)
        found.append(
            {
                "audience": audience.name,
                "id": ids.get("id"),
                "lookalike": ids.get("lookalike"),
                "sent_members": sent,
                "deferred_removals": len(ids.get("deferred") or []),
                "last_push_ok": _iso(row.get("last_success_at")),
                "failing": problem,
                "approximate": [
                    size.get("approximate_count_lower_bound"),
                    size.get("approximate_count_upper_bound"),
                ],
                "last_batches": [
                    {k: p[k] for k in ("at", "op", "rows", "received", "invalid", "samples")}
                    for p in last
                ],
            }
        )
    if as_json:
        print_json(found)
        return
    for a in found:
        low, high = a["approximate"]
        out.print(
            f"{a['audience']} ({a['id'] or 'not created yet'}): {a['sent_members']} sent; "
            f"Meta's size {low}-{high}"
            + (f"; lookalike {a['lookalike']}" if a["lookalike"] else ""),
            highlight=False,
        )
        if a["deferred_removals"]:
            out.print(
                f"  {a['deferred_removals']} removal(s) deferred: Meta says the audience "
                "would be too small; tried again at each push",
                highlight=False,
            )
        if a["failing"]:
            out.print(f"  failing: {a['failing']}", highlight=False, markup=False)
        for b in a["last_batches"]:
            out.print(
                f"  {b['at']:%Y-%m-%d %H:%M} {b['op']} {b['rows']}: received {b['received']}, "
                f"invalid {b['invalid']}" + (f" {b['samples']}" if b["samples"] else ""),
                highlight=False,
            )


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
