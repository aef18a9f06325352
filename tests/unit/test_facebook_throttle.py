"""Meta's throttles pause the scope Meta applies them to (reference/external-apis.md §D):
app-level ones (codes 4, 17; X-App-Usage at the limit) every Page of the app, Page-level
ones (32, 80001 with X-Business-Use-Case-Usage) only that Page. Against the Graph API
emulator over loopback, two Pages with the same app."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from adapters.facebook.config import FacebookConfig
from adapters.facebook.errors import APP, APP_USAGE_PAUSE, GRAPH_ERRORS, app_usage
from adapters.facebook.fake import FakeGraph, FakePage
from adapters.facebook.source import FacebookSource
from connector.http import RETRY, Fail, RateLimited
from connector.pipeline import Pipeline
from connector.runtime import health
from connector.runtime.metrics import API_ERRORS
from connector.store import Store

DAY = 86400.0


def response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    made = requests.Response()
    made.status_code, made._content = status, json.dumps(body).encode()
    made.headers.update(headers or {})
    return made


@pytest.mark.parametrize(
    ("code", "extra", "action"),
    [
        (4, {}, RateLimited(APP, 60.0)),
        (17, {"error_subcode": 2446079}, RateLimited(APP, 60.0)),
        (32, {}, RateLimited("page", 60.0)),
        (80001, {}, RateLimited("page", 60.0)),
        (80005, {}, RateLimited("page", 60.0)),
        (1, {}, RETRY),
        (2, {"is_transient": True}, RETRY),
        (99, {"is_transient": True}, RETRY),
    ],
)
def test_the_error_table_scopes_each_throttle(code: int, extra: Any, action: Any) -> None:
    answer = response(400, {"error": {"code": code, "message": "x", **extra}})
    assert GRAPH_ERRORS.classify(answer) == action


@pytest.mark.parametrize("code", [190, 10, 200, 100])
def test_token_permission_and_bad_requests_are_never_retried(code: int) -> None:
    found = GRAPH_ERRORS.classify(response(400, {"error": {"code": code, "message": "x"}}))
    assert isinstance(found, Fail)


def test_the_regain_time_of_the_buc_header_is_the_wait() -> None:
    buc = {"1": [{"type": "pages", "call_count": 100, "estimated_time_to_regain_access": 4}]}
    answer = response(
        400, {"error": {"code": 80001}}, {"X-Business-Use-Case-Usage": json.dumps(buc)}
    )
    assert GRAPH_ERRORS.wait(answer) == 240
    assert app_usage({"X-App-Usage": '{"call_count": 96, "total_time": 20}'}) == 96
    assert app_usage({"x-app-usage": "nonsense"}) == 0


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    graph = FakeGraph(seed=31)
    graph.start()
    yield graph
    graph.stop()


def two_pages(fake: FakeGraph, store: Store, **extra: Any) -> tuple[FacebookSource, list[str]]:
    pages: list[FakePage] = [fake.add_page("One"), fake.add_page("Two")]
    now = time.time()
    for page in pages:
        form = fake.add_form(page.id, name="F")
        fake.generate_leads(form, 20, start=now - DAY, end=now - 60, dup_rate=0, bad_rate=0)
    config = FacebookConfig.model_validate(
        {
            "app_id": fake.app_id,
            "app_secret": fake.app_secret,
            "graph_url": fake.base_url,
            "pages": [{"id": p.id, "access_token": p.token} for p in pages],
            "fetch_interests": False,
            **extra,
        }
    )
    source = FacebookSource(
        config,
        store.catalogue,
        report=lambda name, state, reason=None, **kw: health.report(
            store, name, state, reason, **kw
        ),
    )
    source.discover()
    return source, [p.id for p in pages]


def paused(store: Store) -> dict[str, float]:
    """Seconds each paused source is paused for, by source name."""
    now = datetime.now(UTC)
    return {
        row["source"]: (row["paused_until"] - now).total_seconds()
        for row in health.read(store)
        if row["state"] == "paused"
    }


@pytest.mark.parametrize("code", [4, 17])
def test_an_app_throttle_pauses_every_page_of_the_app(
    fake: FakeGraph, store: Store, code: int
) -> None:
    source, pages = two_pages(fake, store)
    fake.throttle("app", 600, code=code)
    fake.reset_calls()

    Pipeline(store, workers=0).run(source)

    # One call earned the throttle; the other Page was not called at all.
    assert fake.total_calls() == 1
    held = paused(store)
    assert sorted(held) == sorted(f"facebook:{p}" for p in pages)
    # No regain time, but X-App-Usage at 100%: the app's usage pause, not a minute.
    assert all(APP_USAGE_PAUSE - 10 < s <= APP_USAGE_PAUSE + 1 for s in held.values())
    assert not any(source.available(p) for p in pages)
    fake.reset_calls()
    Pipeline(store, workers=0).run(source)
    assert fake.total_calls() == 0


@pytest.mark.parametrize("code", [32, 80001])
def test_a_page_throttle_pauses_only_that_page(fake: FakeGraph, store: Store, code: int) -> None:
    source, (busy, calm) = two_pages(fake, store)
    fake.throttle(busy, 600, code=code, regain_minutes=4)

    stats = Pipeline(store, workers=0).run(source)

    held = paused(store)
    assert list(held) == [f"facebook:{busy}"]
    assert 230 < held[f"facebook:{busy}"] <= 241  # the BUC header's 4 minutes
    assert stats.created > 0 and source.available(calm) and not source.available(busy)


def test_app_usage_at_the_limit_pauses_every_page_before_meta_refuses(
    fake: FakeGraph, store: Store
) -> None:
    source, pages = two_pages(fake, store, app_usage_limit=50, page_size=5)
    fake.set_budget("app", 10)  # X-App-Usage reaches 50% at the fifth call
    refused = API_ERRORS.labels("facebook", "4")._value.get()

    stats = Pipeline(store, workers=0).run(source)

    # The app's hour (discovery included) holds five calls: the fifth answer said 50%,
    # and no sixth call was made.
    assert len(fake.limits.windows["app"]) == 5
    assert API_ERRORS.labels("facebook", "4")._value.get() == refused  # never refused
    assert stats.created > 0  # what was read before the pause is kept
    held = paused(store)
    assert sorted(held) == sorted(f"facebook:{p}" for p in pages)
    assert all(APP_USAGE_PAUSE - 10 < s <= APP_USAGE_PAUSE + 1 for s in held.values())


def test_an_app_pause_survives_into_the_next_run(fake: FakeGraph, store: Store) -> None:
    source, pages = two_pages(fake, store)
    fake.throttle("app", 600, code=4)
    Pipeline(store, workers=0).run(source)
    again = FacebookSource(source.config, store.catalogue)
    again.restore({row["source"]: row for row in health.read(store)})
    assert not any(again.available(p) for p in pages)
