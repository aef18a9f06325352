"""HubSpot's cases for the contract suite (tests/contract/), over real loopback HTTP
against the emulator (fake.py, written from §G):

- `HubSpotCase` (a `connector.sdk.SourceCase`): the contacts search as a lead source,
  six contacts of an hour ago, a refused token as the broken source, and search's own
  throttle: its 5 requests/s answered with HubSpot's 429 (policy SECONDLY). Search
  answers carry no `X-HubSpot-RateLimit-*` headers (§G), so this throttle has none;
  the headers' limit (TEN_SECONDLY_ROLLING) guards the batch calls of the push, which
  `HubSpotStatusCase` throttles.
- `HubSpotStatusCase` (a `connector.sdk.StatusCase`): the two-way system, its push
  (the "hubspot" outbox destination) and its pull job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.config import HubSpotConfig
from adapters.hubspot.fake import FakeHubSpot
from adapters.hubspot.pull import pull
from adapters.hubspot.push import HubSpotDestination
from adapters.hubspot.source import HubSpotSource
from connector.sdk import Hooks, LeadSource, StatusSystem, Store

HOUR_MS = 3_600_000


def _config(fake: FakeHubSpot, token: str) -> HubSpotConfig:
    return HubSpotConfig.model_validate(
        {
            "token": token,
            "portal_id": fake.portal.portal_id,
            "api_url": fake.base_url,
            # With no lag a read starts AT the cursor (GTE): one contact again.
            "lag": 0,
        }
    )


def _client(config: HubSpotConfig) -> HubSpotClient:
    # Few attempts and no metrics: a throttle outlasts the retries in about a second,
    # and the suite's counts are the emulator's, not the daemon's.
    return HubSpotClient(config, hooks=Hooks(), attempts=2, backoff=0.01)


class HubSpotCase:
    """Six contacts of an hour ago, one a second (see `connector.sdk.SourceCase`)."""

    config_model: type[BaseModel] = HubSpotConfig
    lag_records = 1
    """`lag: 0` re-reads the cursor's own millisecond (GTE, see source.py): here one
    contact, as no two of the case's contacts share a lastmodifieddate."""

    def __init__(self) -> None:
        self.fake = FakeHubSpot()
        self.fake.start()
        self.clock = int(time.time() * 1000) - HOUR_MS
        self.made = 0
        self.history = True
        self.add(6)

    def add(self, n: int) -> None:
        # The first six are an hour of history; later ones are modified as they arrive.
        history, self.history = self.history, False
        for _ in range(n):
            self.clock = self.clock + 1000 if history else max(self.clock + 1, _now_ms())
            self.fake.add_contact(
                f"p{self.made}@example.com",
                at=self.clock,
                firstname=f"Person{self.made}",
                hs_lead_status="NEW",
            )
            self.made += 1

    def _source(self, store: Store, token: str) -> HubSpotSource:
        config = _config(self.fake, token)
        return HubSpotSource(_client(config), config, store)

    def source(self, store: Store) -> LeadSource:
        return self._source(store, self.fake.token)

    def broken(self, store: Store) -> tuple[LeadSource, str]:
        return self._source(store, "pat-na1-not-a-token"), "create a private-app token"

    def order(self, cursor: Any) -> Any:
        return cursor["ms"]

    def throttle(self) -> Callable[[], int] | None:
        # Someone else's searches use the account's 5 a second: every search is a 429.
        before = self.fake.calls["error_429"]
        self.fake.limits.search_per_second = 0
        return lambda: self.fake.calls["error_429"] - before

    def lift(self) -> None:
        self.fake.limits.search_per_second = 5

    def close(self) -> None:
        self.fake.stop()


def _now_ms() -> int:
    return int(time.time() * 1000)


class HubSpotStatusCase:
    """Two HubSpot contacts in `NEW` that the store has not seen (see
    `connector.sdk.StatusCase`)."""

    name = "hubspot"

    def __init__(self) -> None:
        self.fake = FakeHubSpot()
        self.fake.start()
        at = _now_ms() - HOUR_MS
        for i in range(2):
            self.fake.add_contact(f"s{i}@example.com", at=at + i, hs_lead_status="NEW")
        self.config = _config(self.fake, self.fake.token)
        self.client = _client(self.config)

    def pull(self, store: Store) -> None:
        pull(store, self.client, self.config)

    def system(self, store: Store) -> StatusSystem:
        return HubSpotDestination(store, self.client, self.config)

    def word(self, status: str) -> str | None:
        return self.config.vocabulary.to_external(status)

    def set_there(self, external_id: str, status: str) -> None:
        word = self.word(status)
        assert word is not None, f"HubSpot's vocabulary has no word for {status}"
        self.fake.change(int(external_id), self.config.status_property, word, source="CRM_UI")

    def shown(self, external_id: str) -> str | None:
        contact = self.fake.portal.find(external_id, None)
        return None if contact is None else contact.properties.get(self.config.status_property)

    def throttle(self) -> Callable[[], int] | None:
        # The account's rolling window is spent elsewhere: the batch calls get HubSpot's
        # 429 (TEN_SECONDLY_ROLLING) with the X-HubSpot-RateLimit-* headers.
        limits = self.fake.limits
        before = self.fake.calls["error_429"]
        self.saved = (limits.max_per_interval, limits.interval_ms)
        limits.max_per_interval, limits.interval_ms = 0, 500
        return lambda: self.fake.calls["error_429"] - before

    def lift(self) -> None:
        self.fake.limits.max_per_interval, self.fake.limits.interval_ms = self.saved

    def close(self) -> None:
        self.client.close()
        self.fake.stop()
