"""Fan-out: accepted status changes and new contacts become outbox rows for every
connected two-way system except the one the change came from, in the transaction of
the change (a change-feed subscriber).

Rows (connector.sync.outbox, ordered per destination and contact):
- kind "status", key "status:<history id>": {status, status_id, history_id,
  external_ids, identity}; after a merge or unmerge, key "status:merge:<merge id>:<contact>"
  re-sends the contact's status to the records now linked to it (history_id None);
- kind "contact", key "contact:<contact id>": {identity, fields, status, lead}.

`connect(config)` (the CLI and the daemon, before the store opens) installs it for
every store of the process with the systems the installed plugins announce
(`Plugin.status_systems(config)`) and the conflict rules of `sync:`; tests install it
for one engine with systems of their own. A daemon's SIGHUP re-plans it from the new
YAML (`plan`, then `Wiring.apply` once the jobs and routes are built too).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from connector.config import LeadsyncConfig, SyncConfig
from connector.model import STANDARD_FIELDS
from connector.statuses import Catalogue
from connector.store.bulk import among
from connector.store.tables import contacts
from connector.sync import changes, links, outbox

NAME = "status-fanout"
IDENTITY = ("email", "phone", "first_name", "last_name")


@dataclass(frozen=True, slots=True)
class Installed:
    """What `install` set up for a store: its rules and where changes fan out."""

    sync: SyncConfig
    systems: tuple[str, ...]


_NOTHING = Installed(SyncConfig(), ())
_settings: dict[str, Installed] = {}
_by_engine: weakref.WeakKeyDictionary[Any, Installed] = weakref.WeakKeyDictionary()


def installed(conn: Connection) -> Installed:
    """The rules and systems installed for the store `conn` writes to."""
    return _by_engine.get(conn.engine.pool) or _settings.get("*") or _NOTHING


def connected_systems(config: Any, plugins: Mapping[str, Any] | None = None) -> list[str]:
    """The two-way systems the plugins (default: the installed ones) connect under
    `config`."""
    found: list[str] = []
    for plugin in _plugins(plugins).values():
        announce = getattr(plugin, "status_systems", None)
        if announce is not None:
            found += [s for s in announce(config) if s not in found]
    return found


def _plugins(given: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if given is not None:
        return given
    from connector.ports import plugins

    return plugins()


@dataclass(frozen=True, slots=True)
class Wiring:
    """What `connect` installs for a configuration, worked out and not yet installed:
    a daemon's reload asks every plugin first (any may refuse the new config) and only
    then swaps the fan-out, with its jobs and routes, so a failed reload keeps all of
    the old wiring."""

    sync: SyncConfig
    systems: tuple[str, ...]
    subscribers: Mapping[str, changes.Subscriber]

    def apply(self, engine: Engine | None = None) -> list[str]:
        """Install it for `engine` (None: every store of this process), replacing what
        an earlier `apply` or `connect` put there; returns the systems."""
        _subscribe(self.subscribers, engine)
        return install(self.systems, self.sync, engine)


def plan(config: Any, plugins: Mapping[str, Any] | None = None) -> Wiring:
    """The wiring `config` asks for (see `Wiring`); raises what a plugin raises."""
    return Wiring(
        getattr(config, "sync", None) or SyncConfig(),
        tuple(connected_systems(config, plugins)),
        _wanted(config, plugins),
    )


def connect(
    config: LeadsyncConfig,
    engine: Engine | None = None,
    plugins: Mapping[str, Any] | None = None,
) -> list[str]:
    """Install the rules of `config.sync` and the fan-out to the systems the plugins
    announce, and the plugins' own change-feed subscribers (`Plugin.subscribers`), for
    `engine` (None: every store of this process). Returns the systems."""
    return plan(config, plugins).apply(engine)


_hooked: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_hooked_everywhere: set[str] = set()


def _wanted(config: Any, plugins: Mapping[str, Any] | None) -> dict[str, changes.Subscriber]:
    wanted: dict[str, changes.Subscriber] = {}
    for plugin in _plugins(plugins).values():
        offer = getattr(plugin, "subscribers", None)
        if offer is not None:
            wanted.update(offer(config))
    return wanted


def _subscribe(wanted: Mapping[str, changes.Subscriber], engine: Engine | None) -> None:
    before = _hooked_everywhere if engine is None else _hooked.setdefault(engine.pool, set())
    for name in before - set(wanted):
        changes.unsubscribe(engine, name)
    for name, fn in wanted.items():
        changes.subscribe(engine, name, fn)
    before.clear()
    before.update(wanted)


def connect_subscribers(config: Any, engine: Engine | None = None) -> list[str]:
    """Subscribe what the plugins' `subscribers(config)` give; names an earlier call
    installed and this configuration no longer wants are unsubscribed. Returns names."""
    wanted = _wanted(config, None)
    _subscribe(wanted, engine)
    return sorted(wanted)


def install(systems: Sequence[str], sync: SyncConfig, engine: Engine | None = None) -> list[str]:
    """Install `sync` and the fan-out to `systems` (none: no subscriber at all, so the
    ingest hot path builds no events) for `engine` (None: every store)."""
    found = Installed(sync, tuple(systems))
    if engine is None:
        _settings["*"] = found
    else:
        _by_engine[engine.pool] = found
    if systems and sync.fan_out:
        changes.subscribe(engine, NAME, _subscriber(tuple(systems)))
    else:
        changes.unsubscribe(engine, NAME)
    return list(systems)


def uninstall(engine: Engine | None = None) -> None:
    """Remove what `install` put in place for `engine`."""
    changes.unsubscribe(engine, NAME)
    if engine is None:
        _settings.pop("*", None)
    else:
        _by_engine.pop(engine.pool, None)


def origin_system(origin: str) -> str:
    """The system a change came from: "source:hubspot" and "hubspot" are both hubspot."""
    return origin.removeprefix("source:")


def _subscriber(systems: tuple[str, ...]) -> changes.Subscriber:
    def fan_out(conn: Connection, events: Sequence[changes.Event], now: datetime) -> None:
        _fan_out(conn, systems, events, now)

    return fan_out


def _rows(conn: Connection, ids: Sequence[int]) -> dict[int, Any]:
    found: dict[int, Any] = {}
    for cond in among(conn, contacts.c.id, sorted(set(ids))):
        found.update((r.id, r) for r in conn.execute(select(contacts).where(cond)))
    return found


def _catalogue(conn: Connection) -> Catalogue:
    from connector.sync.status import catalogue_of

    return catalogue_of(conn)


def _fan_out(
    conn: Connection, systems: tuple[str, ...], events: Sequence[changes.Event], now: datetime
) -> None:
    wanted: list[int] = []
    for e in events:
        if (isinstance(e, changes.StatusChanged) and e.from_status is not None) or isinstance(
            e, changes.ContactCreated
        ):
            wanted.append(e.contact_id)
        elif isinstance(e, changes.Merged):
            wanted.append(e.survivor)
        elif isinstance(e, changes.Unmerged):
            wanted += [e.restored, e.survivor]
    if not wanted:
        return
    rows = _rows(conn, wanted)
    linked = links.of_contacts(conn, wanted)
    names = _catalogue(conn)

    def status_row(
        system: str, contact_id: int, key: str, history_id: int | None, to: int | None = None
    ) -> None:
        row = rows[contact_id]
        # The status this change moved to (a batch's later change has its own row).
        to = row.status if to is None else to
        payload = {
            "status": names.name(to),
            "status_id": to,
            "history_id": history_id,
            "external_ids": linked.get(contact_id, {}).get(system, []),
            "identity": {f: row._mapping[f] for f in IDENTITY if row._mapping[f] is not None},
        }
        effects.append((system, "status", key, contact_id, payload))

    # One INSERT for the batch's effects, in event order (a contact's rows keep it).
    effects: list[tuple[str, str, str, int | None, Any]] = []
    for e in events:
        if isinstance(e, changes.StatusChanged):
            if e.from_status is None:
                continue  # a new contact: its "contact" row carries the status
            for system in systems:
                if system != origin_system(e.origin):
                    key = f"status:{e.history_id}"
                    status_row(system, e.contact_id, key, e.history_id, e.to_status)
        elif isinstance(e, changes.ContactCreated):
            row = rows[e.contact_id]
            m = row._mapping
            payload = {
                "identity": {f: m[f] for f in IDENTITY if m[f] is not None},
                "fields": {
                    f: m[f] for f in STANDARD_FIELDS if f not in IDENTITY and m[f] is not None
                },
                "status": names.name(row.status),
                "status_id": row.status,
                "lead": dict(e.lead),
            }
            for system in systems:
                if system != origin_system(e.origin):
                    key = f"contact:{e.contact_id}"
                    effects.append((system, "contact", key, e.contact_id, payload))
        elif isinstance(e, changes.Merged | changes.Unmerged):
            pairs = [e.survivor] if isinstance(e, changes.Merged) else [e.restored, e.survivor]
            for contact_id in pairs:
                # The records linked to it may show another contact's status now.
                for system in linked.get(contact_id, {}):
                    if system in systems:
                        key = f"status:merge:{e.merge_id}:{contact_id}"
                        status_row(system, contact_id, key, None)
    outbox.enqueue_many(conn, effects, now)


def push_back(
    conn: Connection, system: str, contact_id: int, history_id: int, now: datetime
) -> None:
    """Write the store's status back to `system` after rejecting a value it showed, so
    that it shows the store's status again (if it is connected)."""
    hub = installed(conn)
    if system not in hub.systems or not hub.sync.fan_out:
        return
    rows = _rows(conn, [contact_id])
    row = rows[contact_id]
    names = _catalogue(conn)
    payload = {
        "status": names.name(row.status),
        "status_id": row.status,
        "history_id": history_id,
        "external_ids": links.external_ids(conn, system, contact_id),
        "identity": {f: row._mapping[f] for f in IDENTITY if row._mapping[f] is not None},
    }
    outbox.enqueue(conn, system, "status", f"status:{history_id}", contact_id, payload, now)
