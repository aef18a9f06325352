"""HubSpot's contacts as a `LeadSource` (stream "contacts"): what the `hubspot.pull` job
reads, page by page, and what the contract suite checks like every other source.

A page is the contacts of one search page as leads, with the cursor that is valid once
they are stored: the newest `lastmodifieddate` so far (never moved back by a lag
re-read). A read starts `lag` seconds before the cursor, because HubSpot's search index
shows a write only after a delay (§G); with `lag: 0` it starts AT the cursor (GTE),
so the contacts modified in the cursor's own millisecond are read again, on purpose:
one written in that millisecond after the search could otherwise be passed over.

A throttle (search's 5/s answered 429, the daily limit) that outlasts the client's
retries ends the read where it stands: the pages already handed over keep their
cursors, nothing later is skipped, and the next run resumes from the cursor
(`throttled` says it happened, for the job's counts).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from adapters.hubspot.client import HubSpotClient, HubSpotContact, HubSpotError
from adapters.hubspot.config import HubSpotConfig
from adapters.hubspot.contacts import READ_PROPERTIES, status_of, to_lead
from adapters.hubspot.webhook import SOURCE
from connector.sdk import Batch, HttpError, Lead, SourceError, Store, ThrottledError, links, reads

log = structlog.get_logger(__name__)

STREAM = "contacts"


@dataclass(frozen=True, slots=True)
class Page:
    """One search page: its contacts and the cursor once they are stored."""

    contacts: list[HubSpotContact]
    cursor: dict[str, int]


def since_ms(cursor: Any, lag: float) -> int | None:
    """Where a read from `cursor` starts: `lag` seconds before it (None: the start)."""
    ms = cursor.get("ms") if isinstance(cursor, dict) else None
    return max(0, ms - int(lag * 1000)) if isinstance(ms, int) else None


@dataclass
class HubSpotSource:
    """The contacts of one HubSpot account, modified since a cursor."""

    client: HubSpotClient
    config: HubSpotConfig
    store: Store
    name: str = SOURCE
    throttled: float | None = field(default=None, init=False)
    """Seconds the API's throttle asked for, when the last read was cut short by one."""

    def check(self) -> None:
        try:
            self.client.check()
        except (HubSpotError, HttpError) as exc:
            raise SourceError(f"hubspot: {exc}") from exc

    def streams(self) -> list[str]:
        return [STREAM]

    def context(self) -> dict[str, Any]:
        return {"source": SOURCE}

    def pages(self, cursor: Any) -> Iterator[Page]:
        """The search pages after `cursor` (see the module docstring)."""
        self.throttled = None
        newest = cursor.get("ms") if isinstance(cursor, dict) else None
        newest = newest if isinstance(newest, int) else None
        wanted = (*READ_PROPERTIES, self.config.status_property)
        found = self.client.modified_since(since_ms(cursor, self.config.lag), wanted)
        page: list[HubSpotContact] = []
        try:
            for contact in found:
                page.append(contact)
                if len(page) < self.client.page:
                    continue
                newest = _newest(page, newest)
                yield Page(page, {"ms": newest})
                page = []
        except ThrottledError as exc:
            # The unfinished page's contacts are read again next time (its cursor was
            # never handed over): cut short, nothing skipped.
            log.warning("hubspot.pull_throttled", scope=exc.scope, wait=exc.wait)
            self.throttled = exc.wait
            return
        if page:
            yield Page(page, {"ms": _newest(page, newest)})

    def leads(self, contacts: list[HubSpotContact]) -> list[Lead]:
        """The contacts as leads. Only one the store does not hold yet carries the
        status HubSpot shows, so that its contact starts there (contacts.py); a known
        contact's status is the engine's to decide (the pull observes it), never the
        lead's: a lead's status moves a contact up past the echo check and the conflict
        rules, so our own older write read back would undo a newer change."""
        prop, words = self.config.status_property, self.config.vocabulary
        ids = [c.id for c in contacts]
        with self.store.reader.connect() as conn:
            # Linked but no lead yet: a contact our push created or found there by email.
            known = reads.stored_source_ids(conn, SOURCE, ids) | set(links.many(conn, SOURCE, ids))
        catalogue = self.store.catalogue
        return [
            to_lead(
                c, None if c.id in known else status_of(c.properties.get(prop), words, catalogue)
            )
            for c in contacts
        ]

    def read(self, stream: str, cursor: Any) -> Iterator[Batch]:
        for page in self.pages(cursor):
            yield Batch(self.leads(page.contacts), page.cursor)


def _newest(page: list[HubSpotContact], before: int | None) -> int:
    """The cursor after `page`: a lag re-read never moves it back."""
    newest = max(c.modified_ms for c in page)
    return newest if before is None else max(newest, before)
