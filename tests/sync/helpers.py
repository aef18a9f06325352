"""Shared pieces of the two-way sync tests: a vocabulary, observations, outbox reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from connector.config import SyncConfig
from connector.ports import StatusObservation
from connector.store import Store
from connector.store.tables import outbox, status_history
from connector.sync import fanout
from connector.sync.vocabulary import Vocabulary

# After anything a test ingests, however late in a long run (ingest stamps status
# changes with the real clock).
T0 = datetime.now(UTC) + timedelta(days=1)

CRM = Vocabulary(
    statuses={
        "NEW": "New",
        "OPEN": "New",
        "IN_PROGRESS": "Reach",
        "CONNECTED": "Qualified",
        "UNQUALIFIED": "Disqualified",
        "OPEN_DEAL": "Negotiating",
        "CUSTOMER": "Won",
        "LOST": "Lost",
    },
    write={"New": "NEW"},
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def obs(
    external_id: str,
    value: str | None,
    seconds: float,
    system: str = "crm",
    by_person: bool = True,
    **identity: str,
) -> StatusObservation:
    return StatusObservation(
        system=system,
        external_id=external_id,
        value=value,
        changed_at=at(seconds),
        by_person=by_person,
        actor="u1" if by_person else None,
        identity=identity,
    )


def connected(
    store: Store, systems: tuple[str, ...] = ("crm", "sheet"), sync: SyncConfig | None = None
) -> Iterator[None]:
    """Fan out to `systems` for this store while the test runs."""
    fanout.install(systems, sync or SyncConfig(), store.engine)
    try:
        yield
    finally:
        fanout.uninstall(store.engine)


def rows(store: Store, destination: str | None = None) -> list[Any]:
    query = select(outbox).order_by(outbox.c.id)
    if destination is not None:
        query = query.where(outbox.c.destination == destination)
    with store.engine.connect() as conn:
        return list(conn.execute(query))


def history(store: Store, contact_id: int) -> list[Any]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                select(status_history)
                .where(status_history.c.contact_id == contact_id)
                .order_by(status_history.c.id)
            )
        )
