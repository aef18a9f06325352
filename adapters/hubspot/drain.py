"""The `hubspot.webhooks` job: stored deliveries -> status observations for the engine.

Per claim (up to 200 deliveries, each up to 100 events): parse; keep, per contact,
the newest change of the status property by `occurredAt` (duplicates and reordered
deliveries settle here, and across claims by the engine's newest-wins rule on the
system's timestamp); contacts the store does not know yet are read from HubSpot (one
batch read per 100) and ingested as leads first, through the normal pipeline; then
`observe` and the deliveries marked done, in the same transaction.

Our own writes come back too (HubSpot sends a propertyChange for an integration's
update): the engine drops them as echoes (value == the link's last written value).
A malformed delivery is marked done with its error; a failure (HubSpot unreachable,
the store refusing) counts an attempt and retries after the inbox's backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Connection

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.config import HubSpotConfig
from adapters.hubspot.contacts import READ_PROPERTIES, identity, status_of, to_lead
from adapters.hubspot.events import PropertyChange, latest, parse
from adapters.hubspot.webhook import SOURCE
from connector.sdk import (
    OUTBOX_JOB,
    Decision,
    Pipeline,
    Runtime,
    StatusObservation,
    Store,
    describe,
    inbox,
    links,
    observe,
    reads,
)

log = structlog.get_logger(__name__)


def known(conn: Connection, ids: list[str]) -> set[str]:
    """The HubSpot ids the store can place: linked, or stored as a hubspot lead."""
    found = set(links.many(conn, SOURCE, ids))
    found |= reads.stored_source_ids(conn, SOURCE, [i for i in ids if i not in found])
    return found


def to_observation(
    change: PropertyChange, props: dict[str, str | None] | None = None
) -> StatusObservation:
    return StatusObservation(
        system=SOURCE,
        external_id=change.contact_id,
        value=change.value,
        changed_at=change.occurred_at,
        by_person=change.by_person,
        actor=change.actor,
        identity=identity(props or {}),
    )


def drain(
    runtime: Runtime,
    client: HubSpotClient,
    config: HubSpotConfig,
    pipeline: Callable[[], Pipeline],
    limit: int = 200,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, int]:
    """Process stored deliveries until none is left (or the daemon stops)."""
    store = runtime.store
    server = getattr(runtime.config, "server", None)
    attempts = int(getattr(server, "webhook_attempts", inbox.DEFAULT_ATTEMPTS))
    counts = {"deliveries": 0, "changes": 0, "read": 0}
    while not runtime.stopping.is_set():
        claimed = inbox.claim(store, SOURCE, limit)
        if not claimed:
            break
        good: list[tuple[inbox.Delivery, list[PropertyChange]]] = []
        for delivery in claimed:
            try:
                good.append((delivery, parse(delivery.body)))
            except Exception as exc:  # any shape a signed body can take
                log.info("hubspot.webhook_malformed", delivery=delivery.id, error=describe(exc))
                inbox.done(store, [delivery.id], error=describe(exc))
        changes = latest((c for _, cs in good for c in cs), config.status_property)
        try:
            ids = [d.id for d, _ in good]
            read, decided = settle(store, client, config, pipeline(), changes, ids, clock)
        except Exception as exc:
            log.warning("hubspot.drain_failed", deliveries=len(good), error=describe(exc))
            died = inbox.fail(store, [(d, describe(exc)) for d, _ in good], attempts)
            if died:
                log.warning("hubspot.webhook_dead_letters", deliveries=died)
            break  # what failed waits for its backoff, not a hot loop
        if any(d.history_id is not None for d in decided):
            # New outbox rows (a change to fan out, a refused one to push back): deliver
            # now rather than at the outbox job's next tick (every 5 s).
            runtime.wake(OUTBOX_JOB)
        counts["deliveries"] += len(good)
        counts["changes"] += len(changes)
        counts["read"] += read
    return counts


def settle(
    store: Store,
    client: HubSpotClient,
    config: HubSpotConfig,
    pipeline: Pipeline,
    changes: list[PropertyChange],
    delivery_ids: list[int],
    clock: Callable[[], datetime],
) -> tuple[int, list[Decision]]:
    """Ingest the contacts not known yet, observe every change and mark the deliveries
    done, in one transaction; returns how many contacts were read from HubSpot, and the
    engine's decisions."""
    ids = [c.contact_id for c in changes]
    with store.reader.connect() as conn:
        have = known(conn, ids)
    unknown = [i for i in ids if i not in have]
    fetched = client.read(unknown, READ_PROPERTIES) if unknown else []
    props = {c.id: c.properties for c in fetched}
    observed = [to_observation(c, props.get(c.contact_id)) for c in changes]

    decided: list[Decision] = []

    def also(conn: Any) -> None:
        decided[:] = observe(conn, observed, config.vocabulary, clock())
        inbox.mark_done(conn, delivery_ids)

    if fetched:
        # HubSpot's status as read now: the webhook's value may be older or newer; the
        # observation that follows settles it by its own time.
        prop, words = config.status_property, config.vocabulary
        found = [
            to_lead(c, status_of(c.properties.get(prop), words, store.catalogue)) for c in fetched
        ]
        pipeline.ingest(SOURCE, found, {"source": SOURCE}, also=also)
    else:
        with store.engine.begin() as conn:
            also(conn)
    return len(fetched), decided
