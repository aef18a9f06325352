"""An emulated two-way system (a generic CRM or sheet, not HubSpot) for the engine's
proofs, written from what any such system does (reference/field-notes.md, "Two-way
sync"), not from our engine:

- it holds records with a status value and its own last-modified time;
- people and automation edit records there; every change, ours included (an integration
  write is a change like any other), produces a change notification that the harness
  may delay, duplicate or reorder before the engine observes it;
- as a `StatusSystem` it takes outbox rows: "contact" creates a record, "status" writes
  the mapped value to every record linked to the contact; after each push it records
  what it wrote (links.link / links.record_written) in a short transaction of its own,
  as an adapter does.

It fails loudly on its own bugs (a row of an unknown kind, a status with no word in its
vocabulary, a write delivered twice for one outbox key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from connector.ports import Delivered, DeliveryResult, OutboxRow, StatusObservation
from connector.store import Store
from connector.sync import links
from connector.sync.vocabulary import Vocabulary


@dataclass
class Record:
    value: str
    updated_at: datetime


@dataclass
class FakeSystem:
    """One emulated two-way system; `clock` is the shared simulated time."""

    name: str
    store: Store
    vocabulary: Vocabulary
    clock: Callable[[], datetime]
    records: dict[str, Record] = field(default_factory=dict)
    notifications: list[StatusObservation] = field(default_factory=list)
    writes: dict[str, int] = field(default_factory=dict)
    """Values written per outbox key (a key written twice is a double delivery)."""
    _next: int = 0

    def _notify(self, external_id: str, by_person: bool, actor: str | None) -> None:
        record = self.records[external_id]
        self.notifications.append(
            StatusObservation(
                self.name, external_id, record.value, record.updated_at, by_person, actor
            )
        )

    def edit(self, external_id: str, value: str, by_person: bool) -> None:
        """A person (or a workflow) changes the record's status in the system."""
        if value not in self.vocabulary.statuses:
            raise AssertionError(f"{self.name}: {value!r} is not a value of this system")
        self.records[external_id] = Record(value, self.clock())
        self._notify(external_id, by_person, "u-7" if by_person else None)

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        results: list[DeliveryResult] = []
        for row in rows:
            if row.kind not in ("contact", "status"):
                raise AssertionError(f"{self.name}: unknown outbox kind {row.kind!r}")
            if row.key in self.writes:
                raise AssertionError(f"{self.name}: {row.key} delivered twice")
            self.writes[row.key] = 1
            status = row.payload["status"]
            value = self.vocabulary.to_external(status)
            if value is None:
                raise AssertionError(f"{self.name} has no word for {status!r}")
            assert row.contact_id is not None
            with self.store.engine.begin() as conn:
                targets = links.external_ids(conn, self.name, row.contact_id)
                if row.kind == "contact" and not targets:
                    self._next += 1
                    targets = [f"{self.name}-{self._next}"]
                for external_id in targets:
                    at = self.clock()
                    self.records[external_id] = Record(value, at)
                    links.record_written(conn, self.name, row.contact_id, external_id, value, at)
            for external_id in targets:
                self._notify(external_id, False, "integration")
            results.append(Delivered())
        return results

    def shows(self) -> dict[int, str]:
        """The status each linked contact shows here (by the vocabulary)."""
        out: dict[int, str] = {}
        with self.store.engine.connect() as conn:
            for external_id, record in self.records.items():
                contact = links.find(conn, self.name, external_id)
                assert contact is not None, f"{self.name}: record {external_id} not linked"
                status = self.vocabulary.to_status(record.value)
                assert status is not None
                out[contact] = status
        return out
