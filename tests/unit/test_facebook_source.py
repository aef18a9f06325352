"""The Facebook source without HTTP: lead mapping, the error table, cursors.

The end-to-end tests (tests/e2e/test_facebook.py) drive the same code through
connector/http.py against the Graph API emulator over loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.facebook import Backfill
from adapters.facebook.config import FacebookConfig
from adapters.facebook.graph import Action, GraphError, classify, peak_usage, regain_seconds
from adapters.facebook.leads import DEFAULT_MAPPING, to_lead
from adapters.facebook.source import FacebookSource, Form
from adapters.facebook.webhook import leadgen_changes, signature, verified
from connector.mapping import Mapping
from connector.ports import Batch
from connector.statuses import Catalogue


def config(**extra: Any) -> FacebookConfig:
    return FacebookConfig.model_validate(
        {
            "app_secret": "s3cret",
            "system_user_token": "tok",
            "pages": [{"id": "111"}, {"id": "222"}],
            "lag": 60,
            **extra,
        }
    )


def graph_lead(lead_id: str, created: int, **answers: Any) -> dict[str, Any]:
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    return {
        "id": lead_id,
        "created_time": when,
        "form_id": "900",
        "field_data": [
            {"name": k, "values": v if isinstance(v, list) else [v]} for k, v in answers.items()
        ],
    }


def test_a_graph_lead_becomes_a_lead_with_its_context() -> None:
    raw = graph_lead(
        "1234567890123456",
        1_700_000_000,
        email=" Siti@Example.COM ",
        phone_number="012-345 6789",
        full_name="Siti Nurhaliza",
        jakiego_produktu=["A", "B"],
    )
    raw.update(
        ad_id="5", ad_name="Ad", adset_id="6", campaign_id="7", platform="ig", is_organic=False
    )
    raw["custom_disclaimer_responses"] = [{"checkbox_key": "marketing", "is_checked": "1"}]
    lead = to_lead(
        raw,
        source="facebook",
        mapping=DEFAULT_MAPPING,
        catalogue=Catalogue.default(),
        region="MY",
        form_name="Spring",
        page_id="111",
        interests=["Yoga"],
    )
    assert lead.problems == []
    assert lead.source_id == "1234567890123456" and lead.ref == "lead 1234567890123456"
    assert lead.fields["email"] == "Siti@Example.COM"  # normalised later, by the pipeline
    assert (lead.fields["first_name"], lead.fields["last_name"]) == ("Siti", "Nurhaliza")
    assert lead.custom["jakiego_produktu"] == ["A", "B"]  # unmapped questions are kept
    assert lead.custom["consent:marketing"] is True
    assert lead.occurred_at is not None and int(lead.occurred_at.timestamp()) == 1_700_000_000
    assert lead.context["platform"] == "ig" and lead.context["is_organic"] is False
    assert lead.context["form_name"] == "Spring" and lead.context["interests"] == ["Yoga"]
    assert lead.context["consents"] == {"marketing": True}
    assert lead.raw is raw


def test_unreadable_leads_name_the_field() -> None:
    broken = {"id": "1234567890123456", "created_time": "yesterday", "field_data": "oops"}
    lead = to_lead(
        broken, source="f", mapping=DEFAULT_MAPPING, catalogue=Catalogue.default(), region=None
    )
    assert [p.field for p in lead.problems] == ["field_data", "created_time"]
    organic = to_lead(
        graph_lead("1234567890123457", 1_700_000_000, email="a@b.co"),
        source="f",
        mapping=Mapping(columns={"email": "email"}),
        catalogue=Catalogue.default(),
        region=None,
    )
    assert organic.context["is_organic"] is True  # no ad ids


@pytest.mark.parametrize(
    ("code", "subcode", "transient", "status", "action"),
    [
        (80005, None, False, 400, Action.THROTTLED),
        (17, 2446079, False, 400, Action.THROTTLED),
        (613, None, False, 400, Action.THROTTLED),
        (190, 463, False, 400, Action.TOKEN),
        (200, None, False, 400, Action.PERMISSION),
        (10, None, False, 400, Action.PERMISSION),
        (100, 33, False, 400, Action.MISSING),
        (100, None, False, 400, Action.FAIL),
        (2, None, True, 500, Action.RETRY),
        (None, None, False, 502, Action.RETRY),
    ],
)
def test_error_table(
    code: int | None, subcode: int | None, transient: bool, status: int, action: Action
) -> None:
    assert classify(code, subcode, transient, status) is action


def test_usage_header_gives_the_pause() -> None:
    header = '{"111": [{"type": "leadgen", "call_count": 100, "total_cputime": 12, "total_time": 40, "estimated_time_to_regain_access": 7}]}'  # noqa: E501
    assert regain_seconds({"X-Business-Use-Case-Usage": header}) == 420
    assert peak_usage({"x-business-use-case-usage": header}) == 100
    assert regain_seconds({}) is None and regain_seconds({"x-business-use-case-usage": "{"}) is None
    expired = GraphError(Action.TOKEN, "Session has expired", code=190, subcode=463)
    assert "token expired" in expired.advice and "renew" in expired.advice


def test_webhook_signature_and_payload() -> None:
    body = b'{"object":"page","entry":[{"id":"111","time":1,"changes":[{"field":"leadgen","value":{"leadgen_id":"42","page_id":"111","form_id":"900"}}]}]}'  # noqa: E501
    assert verified("s3cret", body, signature("s3cret", body))
    assert not verified("s3cret", body + b" ", signature("s3cret", body))
    assert not verified("s3cret", body, None)
    assert not verified("s3cret", body, signature("other", body))
    assert [c["leadgen_id"] for c in leadgen_changes(body.decode())] == ["42"]
    with pytest.raises(ValueError):
        leadgen_changes('{"object": "user"}')


class FakeGraphClient:
    """An in-memory double of adapters.facebook.graph.Graph: newest-first pages."""

    def __init__(self, leads: list[dict[str, Any]], page_size: int = 2) -> None:
        self.leads = sorted(leads, key=lambda r: r["created_time"], reverse=True)
        self.page_size = page_size
        self.calls = 0
        self.queries: list[dict[str, Any]] = []
        self.fail: GraphError | None = None

    def pages(self, *path: str, params: dict[str, Any]) -> Any:
        if path[-1] == "leadgen_forms":
            self.calls += 1
            yield [{"id": "900", "name": "Spring", "status": "ACTIVE"}]
            return
        self.queries.append(params)
        low = next(f["value"] for f in params["filtering"] if f["operator"] == "GREATER_THAN")
        high = next(f["value"] for f in params["filtering"] if f["operator"] == "LESS_THAN")
        from adapters.facebook.leads import created_at

        hits = [
            r
            for r in self.leads
            if low < created_at(r).timestamp() < high  # type: ignore[union-attr]
        ]
        for start in range(0, max(len(hits), 1), self.page_size):
            self.calls += 1
            if self.fail is not None and start > 0:
                raise self.fail
            yield hits[start : start + self.page_size]


def make_source(
    client: FakeGraphClient, now: list[float], **extra: Any
) -> tuple[FacebookSource, list[Any]]:
    reports: list[Any] = []
    source = FacebookSource(
        config(pages=[{"id": "111"}], **extra),
        Catalogue.default(),
        clock=lambda: now[0],
        report=lambda *a, **k: reports.append((a, k)),
        batch_size=2,
        graph_factory=lambda _token: client,  # type: ignore[arg-type,return-value]
    )
    return source, reports


def test_poll_commits_the_window_end_only_with_the_last_batch() -> None:
    leads = [
        graph_lead(f"10000000000000{i:02d}", 1_000_000 + i * 10, email=f"p{i}@x.co")
        for i in range(5)
    ]
    client = FakeGraphClient(leads)
    now = [1_000_100.0]
    source, reports = make_source(client, now)
    assert source.streams() == ["900"]
    batches = list(source.read("900", {"until": 1_000_000}))
    assert [len(b.records) for b in batches] == [2, 2, 1]
    # Newest first: each batch commits how far down the window is stored.
    window = {"since": 999_940, "until": 1_000_100}
    assert [b.cursor for b in batches[:-1]] == [
        {"until": 1_000_000, "window": {**window, "below": 1_000_030}},
        {"until": 1_000_000, "window": {**window, "below": 1_000_010}},
    ]
    assert batches[-1].cursor == {"until": 1_000_100}
    # The lag window: the next poll starts 60 s before the last end.
    list(source.read("900", batches[-1].cursor))
    first = client.queries[-1]["filtering"][0]
    assert first == {
        "field": "time_created",
        "operator": "GREATER_THAN",
        "value": 1_000_100 - 60 - 1,
    }
    assert reports[-1][0][1] == "ok"


def test_throttle_pauses_the_page_and_the_poll_resumes_below_what_is_stored() -> None:
    leads = [
        graph_lead(f"10000000000000{i:02d}", 1_000_000 + i, email=f"p{i}@x.co") for i in range(6)
    ]
    client = FakeGraphClient(leads)
    client.fail = GraphError(Action.THROTTLED, "limit", code=80005, retry_after=300)
    now = [1_000_100.0]
    source, reports = make_source(client, now)
    assert source.streams() == ["900"]
    [batch] = list(source.read("900", {"until": 999_000}))
    assert [r.source_id for r in batch.records] == ["1000000000000005", "1000000000000004"]
    assert batch.cursor == {
        "until": 999_000,
        "window": {"since": 998_940, "until": 1_000_100, "below": 1_000_004},
    }
    assert not source.available("111")
    (name, state, _reason), kwargs = reports[-1]
    assert (name, state) == ("facebook:111", "paused")
    assert kwargs["until"].timestamp() == 1_000_400
    assert list(source.read("900", batch.cursor)) == []  # paused: no call at all
    now[0] += 301
    assert source.available("111")
    client.fail = None
    rest = list(source.read("900", batch.cursor))
    high = next(f["value"] for f in client.queries[-1]["filtering"] if f["operator"] == "LESS_THAN")
    assert high == 1_000_005  # continues below what is stored (boundary second re-read)
    assert {r.source_id for b in rest for r in b.records} == {
        f"10000000000000{i:02d}" for i in range(5)
    }
    assert rest[-1].cursor == {"until": 1_000_100}  # the window's end, not the resume time


def test_token_error_fails_the_page_with_advice() -> None:
    client = FakeGraphClient([graph_lead(f"100000000000000{i}", 1_000_000 + i) for i in range(4)])
    client.fail = GraphError(Action.TOKEN, "expired", code=190, subcode=463)
    source, reports = make_source(client, [1_000_100.0])
    assert source.streams() == ["900"]
    list(source.read("900", None))
    (_name, state, reason), _ = reports[-1]
    assert state == "failing" and "renew the access token" in reason
    assert source.streams() == []


def test_backfill_resumes_below_the_oldest_stored_lead() -> None:
    leads = [
        graph_lead(f"10000000000000{i:02d}", 1_000_000 + i * 10, email=f"p{i}@x.co")
        for i in range(6)
    ]
    client = FakeGraphClient(leads)
    source, _ = make_source(client, [2_000_000.0])
    form = Form("900", "Spring", "111", "ACTIVE")
    reader = source.backfill(form, 1_000_000, 1_000_100, None)
    first = next(reader)  # newest two: 1_000_050 and 1_000_040
    assert first.cursor == {"since": 1_000_000, "until": 1_000_100, "below": 1_000_040}
    reader.close()  # stopped here; run again from the stored cursor
    rest = list(source.backfill(form, 1_000_000, 1_000_100, first.cursor))
    high = next(f["value"] for f in client.queries[-1]["filtering"] if f["operator"] == "LESS_THAN")
    assert high == 1_000_041  # re-reads the boundary second, nothing above it
    seen = {r.source_id for b in [first, *rest] for r in b.records}
    assert len(seen) == 6
    assert rest[-1].cursor["done"] is True
    assert list(source.backfill(form, 1_000_000, 1_000_100, rest[-1].cursor)) == []


class _Reader:
    """Just what Backfill asks of a FacebookSource."""

    name = "facebook"

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping

    def backfill(self, form: Form, since: float, until: float, cursor: object) -> Iterator[Batch]:
        yield Batch([], {"until": until})

    def available(self, page_id: str) -> bool:
        return True


@pytest.mark.parametrize("stopped", [False, True])
def test_a_backfill_stopped_by_sigterm_does_not_count_its_form_as_finished(
    stopped: bool,
) -> None:
    stopping = threading.Event()
    form = Form("f1", "Form", "p1", "ACTIVE")
    job = Backfill(_Reader(stopping), [form], 0.0, 10.0)  # type: ignore[arg-type]
    if stopped:
        stopping.set()
    list(job.read(job.streams()[0], None))
    assert job.finished == (set() if stopped else {"f1"})
