"""Identifies become contacts: the `webtag.identify` job.

The collector stores each identify in the webhook inbox. This job claims them and, for
each, ingests a `Lead` (source `webtag`, id `<site>:<event id>`, so a retried identify
changes nothing) through the pipeline, the same identity resolution every source
gets; in the same transaction it links the visitor to the contact the lead landed on
and turns the visitor's anonymous page views into the contact's interactions. The
lead carries the visitor's last-touch UTM parameters and Meta ids as custom
attributes (`utm_source`, ..., `fbc`, `fbp`), so the contact says where it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy import Connection

from adapters.webtag.config import WebtagConfig
from adapters.webtag.events import Traits
from connector.sdk import IngestStats, Lead, Pipeline, Runtime, describe, inbox, visitors

log = structlog.get_logger(__name__)


def to_lead(item: dict[str, Any], config: WebtagConfig, seen: dict[str, Any] | None) -> Lead:
    """The lead an identify stands for; `seen` is the visitor as stored (for its UTM and
    Meta ids), None when it has no page view yet."""
    site = next((s for s in config.sites if s.name == item["site"]), None)
    custom: dict[str, Any] = {}
    if seen is not None:
        custom.update((seen.get("utm") or {}).items())
        custom.update({k: seen[k] for k in ("fbc", "fbp") if seen.get(k)})
    raw = {k: item[k] for k in ("site", "id", "visitor", "url", "traits", "at")}
    context = {"kind": "webtag", "site": item["site"], "source": config.source}
    if site is not None and site.region:
        context["region"] = site.region
    return lead_of(raw, context, custom)


def lead_of(raw: dict[str, Any], context: dict[str, Any], custom: dict[str, Any]) -> Lead:
    """The lead of a stored identify (`raw` as the leads and quarantine tables keep it):
    the drain's and `quarantine retry`'s one way of reading it."""
    traits = Traits.model_validate(raw["traits"])
    return Lead(
        source=str(context.get("source") or "webtag"),
        ref=f"identify {raw['id']} on {raw['site']}",
        fields=traits.fields(),
        custom=custom,
        source_id=f"{raw['site']}:{raw['id']}",
        region=context.get("region"),
        occurred_at=datetime.fromisoformat(raw["at"]),
        raw=raw,
        context=context,
    )


def _linker(item: dict[str, Any], source: str, ids: list[int]) -> Callable[[Connection], None]:
    def link(conn: Connection) -> None:
        contact = visitors.contact_of_lead(conn, source, f"{item['site']}:{item['id']}")
        if contact is not None:  # None: the lead was quarantined (nothing identifies)
            visitors.link_visitor(
                conn, item["site"], item["visitor"], contact, datetime.now(UTC), source
            )
        inbox.mark_done(conn, ids)

    return link


def drain(runtime: Runtime, config: WebtagConfig, limit: int = 200) -> IngestStats:
    """Ingest every stored identify until none is left (or the daemon stops)."""
    total = IngestStats()
    store = runtime.store
    server = getattr(runtime.config, "server", None)
    attempts = int(getattr(server, "webhook_attempts", inbox.DEFAULT_ATTEMPTS))
    region = getattr(runtime.config, "default_region", None)
    while not runtime.stopping.is_set():
        claimed = inbox.claim(store, config.source, limit)
        if not claimed:
            break
        failed: list[tuple[inbox.Delivery, str]] = []
        for delivery in claimed:
            try:
                item = orjson.loads(delivery.body)
                seen = visitors.visitor(store, item["site"], item["visitor"])
                lead = to_lead(item, config, seen)
            except Exception as exc:  # the collector validated it; a bug, kept for a person
                inbox.done(store, [delivery.id], error=describe(exc))
                continue
            try:
                stats = Pipeline(store, default_region=region, workers=0).ingest(
                    config.source,
                    [lead],
                    lead.context,
                    also=_linker(item, config.source, [delivery.id]),
                )
            except Exception as exc:
                failed.append((delivery, describe(exc)))
                continue
            for name in ("rows", "created", "updated", "merged", "unchanged", "quarantined"):
                setattr(total, name, getattr(total, name) + getattr(stats, name))
        if inbox.fail(store, failed, attempts):
            log.warning("webtag.identify_dead_letters", count=len(failed))
        if failed:
            break  # what failed waits for its backoff, not a hot loop
    return total


def purge(runtime: Runtime, config: WebtagConfig) -> int:
    """Delete anonymous visitors past the retention (the `webtag.retention` job)."""
    before = datetime.now(UTC) - timedelta(days=config.anonymous_retention_days)
    gone = 0
    while not runtime.stopping.is_set():
        n = visitors.purge_anonymous(runtime.store, before)
        gone += n
        if n == 0:
            break
    return gone
