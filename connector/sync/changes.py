"""The change feed: every change the store makes, as typed events, in its transaction.

Every path that changes a contact emits here, inside the transaction that makes the
change: ingest (one `emit` per batch, store/ingest.py `apply`), a person's status move,
merge and unmerge (store/contacts.py), the status engine (sync/status.py) and a
catalogue change (statuses deleted, contacts moved to Unknown). Subscribers turn events
into outbox rows with `connector.sync.outbox.enqueue` on the same connection, so a
change and its outbound effects commit together or not at all.

Subscribers are per store engine (`subscribe(engine, fn)`: tests, a benchmark) or for
every store of the process (`subscribe(None, fn)`: the CLI and the daemon, installed
before the store is opened, so a catalogue change at open is seen too). When nobody
subscribes, `listening` is False and writers build no events at all: the ingest hot
path pays one dict lookup per batch.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine


@dataclass(frozen=True, slots=True)
class ContactCreated:
    """A contact entered the store (import, source)."""

    contact_id: int
    origin: str
    """"source:<name>" for a source, the system's name for a two-way system."""
    lead: Mapping[str, Any] = field(default_factory=dict)
    """The lead that created it: source and the form/campaign/ad names of its context."""


@dataclass(frozen=True, slots=True)
class LeadAdded:
    """A new lead (a source record not seen before) joined a contact that already
    existed, or a contact created in the same batch by another lead: a second Meta lead
    form of a known person. The lead that created a contact is ContactCreated's."""

    contact_id: int
    origin: str
    lead: Mapping[str, Any] = field(default_factory=dict)
    """As ContactCreated.lead: the source, source_id and its context's names."""


@dataclass(frozen=True, slots=True)
class AttributesChanged:
    """Attributes of a stored contact changed (a later record, a merge)."""

    contact_id: int
    origin: str


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """A contact's status changed (only accepted changes are events)."""

    contact_id: int
    history_id: int
    from_status: int | None
    """None: the contact was created in `to_status`."""
    to_status: int
    origin: str
    """Who decided: "person", "source:<name>", a two-way system's name, "catalogue: …"."""
    actor: str | None
    rule: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Merged:
    """`absorbed` was folded into `survivor` (automatically or by a person)."""

    survivor: int
    absorbed: int
    merge_id: int
    origin: str


@dataclass(frozen=True, slots=True)
class Unmerged:
    """A merge was undone: `restored` is a contact of its own again."""

    restored: int
    survivor: int
    merge_id: int


@dataclass(frozen=True, slots=True)
class StatusDeleted:
    """A status left the catalogue; its contacts moved to Unknown (each also has a
    StatusChanged with origin "catalogue: status deleted")."""

    status_id: int
    contact_ids: tuple[int, ...]


Event = (
    ContactCreated
    | LeadAdded
    | AttributesChanged
    | StatusChanged
    | Merged
    | Unmerged
    | StatusDeleted
)
Subscriber = Callable[[Connection, Sequence[Event], datetime], None]
"""Called with the writer's connection, inside its transaction; raising rolls the
change back (an effect that cannot be written must not be lost silently)."""

_everywhere: dict[str, Subscriber] = {}
_by_engine: weakref.WeakKeyDictionary[Any, dict[str, Subscriber]] = weakref.WeakKeyDictionary()


def _key(engine: Engine) -> Any:
    # The pool is shared by an engine and its execution_options() copies (Store.reader),
    # so it names "this store" whichever copy a connection came from.
    return engine.pool


def subscribe(engine: Engine | None, name: str, fn: Subscriber) -> None:
    """Call `fn` for every batch of events written through `engine` (None: through any
    engine of this process). `name` makes it idempotent: subscribing a name again
    replaces the earlier subscriber."""
    if engine is None:
        _everywhere[name] = fn
    else:
        _by_engine.setdefault(_key(engine), {})[name] = fn


def unsubscribe(engine: Engine | None, name: str) -> None:
    """Remove a subscriber (a no-op if there is none by that name)."""
    if engine is None:
        _everywhere.pop(name, None)
    else:
        _by_engine.get(_key(engine), {}).pop(name, None)


def _subscribers(conn: Connection) -> list[Subscriber]:
    mine = _by_engine.get(_key(conn.engine))
    if not mine:
        return list(_everywhere.values())
    return [*_everywhere.values(), *mine.values()]


def listening(conn: Connection) -> bool:
    """Whether anyone subscribes to changes written through `conn` (if not, writers
    need not build events)."""
    return bool(_everywhere) or bool(_by_engine.get(_key(conn.engine)))


def emit(conn: Connection, events: Sequence[Event], now: datetime) -> None:
    """Hand `events` to every subscriber, in the caller's transaction."""
    if not events:
        return
    for fn in _subscribers(conn):
        fn(conn, events, now)
