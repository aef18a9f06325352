"""The "hubspot" destination: outbox rows of kind "contact" and "status" pushed to HubSpot.

- "contact" (a contact created in the store, not from HubSpot): batch upsert by email,
  100 a call, with its standard attributes, its lead context under the properties
  `context_properties` names, and its status (the vocabulary's `write` side). Each
  result's HubSpot id is linked to the contact (`new` says whether HubSpot created it
  or matched an existing contact by email: both are linked).
- "status" (an accepted status change from elsewhere): batch update of the status
  property on the contact's linked HubSpot ids, 100 a call. A contact with no link yet
  (or whose link HubSpot no longer knows) is upserted by email instead; a status the
  vocabulary has no HubSpot word for is delivered as nothing to write.

After a successful call the links and the value written are recorded
(`links.record_written`) in a short transaction of their own: the engine's echo check
reads them when HubSpot's webhook for our own write comes back.

Errors: a throttle (429, a paused daily limit) retries every row after the wait it
names; a transient error retries with the outbox's backoff; a refusal of a whole batch
(400) is tried again row by row, so one bad row fails alone with HubSpot's message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from adapters.hubspot.client import ContactInput, HubSpotClient, lead_properties
from adapters.hubspot.config import HubSpotConfig
from adapters.hubspot.contacts import ms_to_datetime
from adapters.hubspot.webhook import SOURCE
from connector.sdk import (
    Delivered,
    DeliveryResult,
    Failed,
    HttpError,
    OutboxRow,
    Retry,
    Store,
    ThrottledError,
    TransientError,
    describe,
    links,
)

log = structlog.get_logger(__name__)

NO_EMAIL = (
    "the contact has no email and no HubSpot link: HubSpot contacts are upserted by "
    "email; add an email to the contact, then `leadsync outbox retry`"
)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class HubSpotDestination:
    """Delivers the outbox rows whose destination is "hubspot"."""

    name = SOURCE

    def __init__(
        self,
        store: Store,
        client: HubSpotClient,
        config: HubSpotConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.client, self.config, self.clock = store, client, config, clock
        self.created = 0
        """Contacts HubSpot created on our upserts (the `new` flags), for summaries."""

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        try:
            return self._deliver(rows)
        except ThrottledError as exc:
            return [Retry(describe(exc), after=exc.wait) for _ in rows]
        except TransientError as exc:
            return [Retry(describe(exc)) for _ in rows]
        except HttpError as exc:
            if len(rows) == 1:
                return [Failed(exc.action or describe(exc))]
            # One row's bad value fails the whole batch: find it, deliver the rest.
            return [result for row in rows for result in self.deliver([row])]

    def _deliver(self, rows: Sequence[OutboxRow]) -> list[DeliveryResult]:
        results: dict[int, DeliveryResult] = {}
        contacts = [r for r in rows if r.kind == "contact"]
        statuses = [r for r in rows if r.kind == "status"]
        for row in rows:
            if row.kind not in ("contact", "status"):
                results[row.id] = Failed(f"HubSpot does not take outbox rows of kind {row.kind}")
        # (row, email, properties, status value); a "contact" row's value is written only
        # if HubSpot creates the contact (see `_upsert`), a "status" row's always.
        upserts: list[tuple[OutboxRow, str, dict[str, str], str | None]] = []
        for row in contacts:
            payload = _mapping(row.payload)
            ident, fields = _mapping(payload.get("identity")), _mapping(payload.get("fields"))
            email = str(ident.get("email") or "")
            if not email or row.contact_id is None:
                results[row.id] = Failed(NO_EMAIL)
                continue
            props = lead_properties({**fields, **ident}, _mapping(payload.get("lead")), self.config)
            upserts.append((row, email, props, self._external(payload.get("status"))))
        updates: list[tuple[OutboxRow, list[str], str]] = []
        with self.store.reader.connect() as conn:
            for row in statuses:
                payload = _mapping(row.payload)
                value = self._external(payload.get("status"))
                if value is None:
                    results[row.id] = Delivered()  # HubSpot has no word for it
                    continue
                ids = links.external_ids(conn, SOURCE, row.contact_id) if row.contact_id else []
                ids = ids or [str(i) for i in payload.get("external_ids") or []]
                email = str(_mapping(payload.get("identity")).get("email") or "")
                if ids:
                    updates.append((row, ids, value))
                elif email and row.contact_id is not None:
                    upserts.append((row, email, {self.config.status_property: value}, value))
                else:
                    results[row.id] = Failed(NO_EMAIL)
        # (contact, HubSpot id, value written, HubSpot's time of the write)
        written: list[tuple[int, str, str | None, int | None]] = []
        if updates:
            pushed = self.client.push_statuses([(i, v) for _, ids, v in updates for i in ids])
            missing = set(pushed.missing)
            for row, ids, value in updates:
                assert row.contact_id is not None
                live = [i for i in ids if i not in missing]
                written += [(row.contact_id, i, value, pushed.written_ms.get(i)) for i in live]
                if live:
                    results[row.id] = Delivered()
                    continue
                # Deleted or merged away in HubSpot: find or create it by email.
                email = str(_mapping(_mapping(row.payload).get("identity")).get("email") or "")
                if email:
                    upserts.append((row, email, {self.config.status_property: value}, value))
                else:
                    results[row.id] = Failed(
                        f"HubSpot no longer has contact(s) {', '.join(ids)} and the "
                        "contact has no email to find it by"
                    )
        if upserts:
            written += self._upsert(upserts, results)
        self._record(written)
        return [results[r.id] for r in rows]

    def _upsert(
        self,
        upserts: list[tuple[OutboxRow, str, dict[str, str], str | None]],
        results: dict[int, DeliveryResult],
    ) -> list[tuple[int, str, str | None, int | None]]:
        """Upsert by email. A new contact's status is not sent with it: HubSpot may
        already have the person (matched by email), with a status someone set there,
        which the engine must weigh rather than have overwritten. So the status of a
        "contact" row follows in one batch update only for the contacts HubSpot
        created; for one it had, only the link is recorded and its own status arrives by
        webhook or pull. A "status" row's value is sent with its upsert."""
        prop = self.config.status_property
        inputs = [
            ContactInput(e, {**p, prop: v} if r.kind == "status" and v else p)
            for r, e, p, v in upserts
        ]
        done = self.client.upsert(inputs)
        by_email = {u.email: u for u in done}
        self.created += sum(u.new for u in done)
        written: list[tuple[int, str, str | None, int | None]] = []
        follow: list[tuple[int, str, str]] = []
        for row, email, _, value in upserts:
            found = by_email.get(email.strip().lower())
            assert row.contact_id is not None
            if found is None:
                results[row.id] = Retry("HubSpot's upsert answer left this email out")
                continue
            results[row.id] = Delivered()
            if row.kind == "status":
                written.append((row.contact_id, found.id, value, found.written_ms))
            elif found.new and value is not None:
                follow.append((row.contact_id, found.id, value))
            else:
                written.append((row.contact_id, found.id, None, None))
        if follow:
            pushed = self.client.push_statuses([(i, v) for _, i, v in follow])
            written += [(c, i, v, pushed.written_ms.get(i)) for c, i, v in follow]
        return written

    def _external(self, status: Any) -> str | None:
        return self.config.vocabulary.to_external(str(status)) if status else None

    def _record(self, written: list[tuple[int, str, str | None, int | None]]) -> None:
        """Links and last-written values, in one short transaction after the calls. The
        write is dated by HubSpot's own clock when it said (the echo's occurredAt is the
        same instant, and a person's later edit there is newer), else by ours."""
        if not written:
            return
        now = self.clock()
        with self.store.engine.begin() as conn:
            for contact_id, external_id, value, at_ms in written:
                links.link(conn, SOURCE, external_id, contact_id, now)
                if value is not None:
                    at = ms_to_datetime(at_ms) if at_ms is not None else now
                    links.record_written(conn, SOURCE, contact_id, external_id, value, at)
