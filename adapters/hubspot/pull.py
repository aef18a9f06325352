"""The `hubspot.pull` job: contacts modified in HubSpot, as leads and status observations.

Search by `lastmodifieddate` ascending, 200 a page, past the 10,000-result cap (the
client restarts with GTE from the last timestamp and drops the boundary's repeats),
at most 5 searches/s (the client's "search" scope). Each page commits in ONE
transaction: the contacts as leads of source "hubspot" through the normal pipeline,
the cursor, and their status property observed by the engine. A crash keeps all three
or none; the next run starts from the cursor.

The cursor is the newest `lastmodifieddate` stored; a run re-reads `lag` seconds
before it, because HubSpot's search index shows a write only after a delay (§G):
a contact modified just before the previous search may appear now with an older
timestamp than the cursor. Re-reading is harmless: an unchanged lead is `unchanged`,
an already-seen status value is no change for the engine.

What search cannot say: when the status itself changed (only when the contact was last
modified, which is as late or later) and who changed it. Observations from the pull are
therefore dated `lastmodifieddate` and count as automation (`by_person=False`); the
webhook, which carries both, is the precise path and the pull the safety net.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from adapters.hubspot.client import HubSpotClient, HubSpotContact
from adapters.hubspot.config import HubSpotConfig
from adapters.hubspot.contacts import identity, ms_to_datetime
from adapters.hubspot.source import STREAM, HubSpotSource
from adapters.hubspot.webhook import SOURCE
from connector.sdk import (
    Decision,
    Lead,
    Pipeline,
    StatusObservation,
    Store,
    load_cursor,
    observe,
    save_cursor,
)

PULL_JOB = "hubspot.pull"
__all__ = ["PULL_JOB", "STREAM", "commit", "observation", "pull"]


def observation(contact: HubSpotContact, config: HubSpotConfig) -> StatusObservation:
    """The contact's status property as the engine reads it (see the module docstring
    for why it is dated lastmodifieddate and counted as automation)."""
    value = contact.properties.get(config.status_property)
    return StatusObservation(
        system=SOURCE,
        external_id=contact.id,
        value=value or None,
        changed_at=ms_to_datetime(contact.modified_ms),
        by_person=False,
        identity=identity(contact.properties),
    )


def pull(
    store: Store,
    client: HubSpotClient,
    config: HubSpotConfig,
    *,
    default_region: str | None = None,
    stopping: Callable[[], bool] = lambda: False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    wake: Callable[[], None] = lambda: None,
) -> dict[str, int]:
    """One run: every contact modified since the cursor (minus the lag), page by page,
    read through `HubSpotSource` (source.py: the same reading the contract suite
    checks); counts for the daemon's log. `wake` is called after a page that wrote
    outbox rows (the daemon's outbox job then delivers at once)."""
    with store.engine.begin() as conn:
        cursor = load_cursor(conn, SOURCE, STREAM)
    source = HubSpotSource(client, config, store)
    counts = {"contacts": 0, "pages": 0, "observed": 0, "throttled": 0}
    pipeline = Pipeline(store, default_region=default_region, workers=0)
    for page in source.pages(cursor):
        observed = [observation(c, config) for c in page.contacts]
        found = source.leads(page.contacts)
        if commit(pipeline, found, observed, page.cursor, config, clock):
            wake()
        counts["contacts"] += len(page.contacts)
        counts["pages"] += 1
        counts["observed"] += len(observed)
        if stopping():
            break
    # A throttle cut the run short: the next run resumes from the last page's cursor.
    counts["throttled"] = int(source.throttled is not None)
    return counts


def commit(
    pipeline: Pipeline,
    found: Sequence[Lead],
    observed: Sequence[StatusObservation],
    cursor: dict[str, Any],
    config: HubSpotConfig,
    clock: Callable[[], datetime],
) -> bool:
    """Leads, cursor and observations in the pipeline's one transaction (the
    observations after the leads: the engine finds each contact by its lead). True if
    the engine recorded a decision (and so may have written outbox rows)."""
    decided: list[Decision] = []

    def also(conn: Any) -> None:
        now = clock()
        save_cursor(conn, SOURCE, STREAM, cursor, now)
        decided[:] = observe(conn, observed, config.vocabulary, now)

    stats = pipeline.ingest(SOURCE, found, {"source": SOURCE}, also=also)
    return stats.created > 0 or any(d.history_id is not None for d in decided)
