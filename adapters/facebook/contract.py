"""The Facebook adapter's case for the contract suite (tests/contract/): the Graph API
emulator with one Page and one form of six leads, an invalid token as the broken source,
and Meta's leadgen throttle (HTTP 400, code 80005, with its usage header)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from adapters.facebook.config import FacebookConfig
from adapters.facebook.fake import FakeGraph
from adapters.facebook.source import FacebookSource
from connector.sdk import API_ERRORS, LeadSource, Store

THROTTLE_CODE = 80005


class FacebookCase:
    """One Page, one form, six leads of an hour ago (see `connector.sdk.SourceCase`)."""

    config_model: type[BaseModel] = FacebookConfig
    lag_records = 0  # `lag: 0` below: a poll starts where the last one ended

    def __init__(self) -> None:
        self.fake = FakeGraph(seed=5)
        self.fake.start()
        self.page = self.fake.add_page("Contract")
        self.form = self.fake.add_form(self.page.id, name="Form")
        self.clock = time.time() - 3600
        self.history = True
        self.add(6)

    def add(self, n: int) -> None:
        # The first leads are an hour of history; later ones are created as they arrive.
        history, self.history = self.history, False
        for i in range(n):
            self.clock = self.clock + 1 if history else time.time()
            self.fake.add_lead(
                self.form,
                {"email": f"p{self.clock:.3f}-{i}@example.com", "full_name": f"Person {i}"},
                created_time=self.clock,
            )

    def _config(self, token: str) -> FacebookConfig:
        return FacebookConfig.model_validate(
            {
                "app_id": self.fake.app_id,
                "app_secret": self.fake.app_secret,
                "graph_url": self.fake.base_url,
                "pages": [{"id": self.page.id, "access_token": token}],
                "lag": 0,
                "page_size": 4,
            }
        )

    def source(self, store: Store) -> LeadSource:
        return FacebookSource(self._config(self.page.token), store.catalogue, batch_size=4)

    def broken(self, store: Store) -> tuple[LeadSource, str]:
        source = FacebookSource(self._config("not-a-token"), store.catalogue)
        return source, "renew the access token"

    def order(self, cursor: Any) -> Any:
        return cursor["until"]

    def throttle(self) -> Callable[[], int] | None:
        self.fake.throttle(self.page.id, 600, code=THROTTLE_CODE, regain_minutes=2)
        counted = API_ERRORS.labels("facebook", str(THROTTLE_CODE))
        before = counted._value.get()
        return lambda: int(counted._value.get() - before)

    def lift(self) -> None:
        self.fake.throttle(self.page.id, 0)  # ends now

    def close(self) -> None:
        self.fake.stop()
