"""Text no store can hold (NUL): cleaned the same way on SQLite and PostgreSQL, and one
such value never sinks the batch, the job or the webhook requests it arrives with."""

from __future__ import annotations

import json
import time
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.csv.source import CsvSource
from adapters.facebook import FacebookPlugin
from adapters.facebook.fake import FakeGraph
from adapters.facebook.source import FacebookSource
from connector import text as text_module
from connector.mapping import Mapping
from connector.model import Lead
from connector.pipeline import Pipeline
from connector.runtime import health, inbox
from connector.store import Store
from connector.store.tables import contacts, cursors, leads, quarantine, webhook_deliveries
from connector.text import clean_bytes, clean_leads, clean_text, clean_value
from tests.e2e.test_facebook import QUESTIONS, StubRuntime, count, fake, fb_config  # noqa: F401

DAY = 86400.0
MAPPING = Mapping.model_validate(
    {"columns": {"email": "email", "name": "full_name", "note": {"custom": "note"}}}
)


def test_a_nul_in_a_csv_value_imports_on_both_stores(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(
        b"email,name,note\nx\x00y@example.com,Ana\x00 Lee,a\x00b\nz@example.com,Zoe,ok\n"
    )
    source = CsvSource(name="nul", paths=[path], mapping=MAPPING, mapping_path=None)
    stats = Pipeline(store, workers=0).run(source)
    assert (stats.rows, stats.created, stats.quarantined) == (2, 2, 0)
    with store.engine.connect() as conn:
        emails = set(conn.execute(select(contacts.c.email)).scalars())
        raws = [r for r in conn.execute(select(leads.c.raw)).scalars()]
    assert emails == {"xy@example.com", "z@example.com"}
    assert all("\x00" not in json.dumps(raw) for raw in raws)
    assert {"email": "xy@example.com", "name": "Ana Lee", "note": "ab"} in raws


def test_a_nul_in_a_quarantined_record_is_cleaned_too(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"email,name,note\nnot-an-email\x00,Ana,x\n")
    source = CsvSource(name="nul", paths=[path], mapping=MAPPING, mapping_path=None)
    stats = Pipeline(store, workers=0).run(source)
    assert stats.quarantined == 1
    with store.engine.connect() as conn:
        [raw] = conn.execute(select(quarantine.c.raw)).scalars()
    assert raw["email"] == "not-an-email"


def test_facebook_poll_stores_a_lead_with_a_nul_and_polls_every_form(
    fake: FakeGraph,  # noqa: F811
    store: Store,
) -> None:
    page = fake.add_page("Shop")
    first, second = (fake.add_form(page.id, name=n, questions=QUESTIONS) for n in "AB")
    created = time.time() - 3600
    fake.add_lead(
        first,
        {"full_name": "Nul\x00 Person", "email": "nul@example.com"},
        created_time=created,
        notify=False,
    )
    fake.add_lead(
        second, {"full_name": "Ok", "email": "ok@example.com"}, created_time=created, notify=False
    )
    config = fb_config(fake, page)
    runtime = StubRuntime(store, type("Config", (), {"facebook": config})())
    poll = next(j for j in FacebookPlugin().jobs(runtime) if j.id == "facebook.poll")
    poll.run(runtime)
    assert count(store, leads) == 2
    with store.engine.connect() as conn:
        forms = set(conn.execute(select(cursors.c.stream).where(cursors.c.source == "facebook")))
    assert forms == {(first,), (second,)}  # both cursors moved


def test_a_form_that_fails_fails_the_job_alone_and_its_page_is_not_ok(
    fake: FakeGraph,  # noqa: F811
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page = fake.add_page("Shop")
    first, second = (fake.add_form(page.id, name=n, questions=QUESTIONS) for n in "AB")
    now = time.time()
    for form in (first, second):
        fake.generate_leads(form, 5, start=now - DAY, end=now - 60)
    read = FacebookSource.read

    def broken(self: FacebookSource, stream: str, cursor: Any) -> Any:
        if stream == first:
            raise RuntimeError("the store refused a record")
        return read(self, stream, cursor)

    monkeypatch.setattr(FacebookSource, "read", broken)
    config = fb_config(fake, page)
    runtime = StubRuntime(store, type("Config", (), {"facebook": config})())
    poll = next(j for j in FacebookPlugin().jobs(runtime) if j.id == "facebook.poll")
    with pytest.raises(RuntimeError, match="1 form"):
        poll.run(runtime)
    assert count(store, leads) == 5  # the second form was still polled
    [row] = health.read(store)
    assert row["state"] == "failing" and first in row["reason"]


def test_a_webhook_body_with_a_raw_nul_does_not_fail_its_neighbours(store: Store) -> None:
    writer = inbox.GroupWriter(store)
    good = [json.dumps({"object": "page", "n": i}).encode() for i in range(20)]
    futures = [writer.submit("facebook", body) for body in good[:10]]
    futures.append(writer.submit("facebook", b'{"object":"page","x":"a\x00b"}'))
    futures += [writer.submit("facebook", body) for body in good[10:]]
    wait(futures, timeout=60)
    assert all(f.exception() is None for f in futures)
    with store.engine.connect() as conn:
        bodies = list(conn.execute(select(webhook_deliveries.c.body)).scalars())
    assert len(bodies) == 21 and '{"object":"page","x":"ab"}' in bodies


def test_a_delivery_the_store_refuses_fails_alone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever else a store could refuse: only that request answers 500.
    real = inbox._row

    def refusing(source: str, body: bytes, at: Any) -> dict[str, Any]:
        row = real(source, body, at)
        if b"poison" in body:
            row["source"] = None  # NOT NULL: the insert fails
        return row

    monkeypatch.setattr(inbox, "_row", refusing)
    writer = inbox.GroupWriter(store)
    futures = [writer.submit("facebook", f"body {i}".encode()) for i in range(5)]
    futures.insert(2, writer.submit("facebook", b"poison"))
    wait(futures, timeout=60)
    assert [f.exception() is None for f in futures] == [True, True, False, True, True, True]
    assert inbox.pending(store) == 5


# -- the cleaning itself ---------------------------------------------------------------


def test_clean_text_and_bytes() -> None:
    assert clean_text("a\x00b\x00") == "ab"
    assert clean_bytes(b'{"a":"x\x00"}') == b'{"a":"x"}'
    same = "untouched"
    assert clean_text(same) is same


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.text(alphabet=st.sampled_from("ab\x00é")),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(alphabet="ab\x00", max_size=3), inner, max_size=3)
        ),
        max_leaves=20,
    )
)
def test_clean_value_leaves_no_nul_and_changes_nothing_else(value: Any) -> None:
    def expected(v: Any) -> Any:  # the obvious recursive version, for small inputs
        if isinstance(v, str):
            return v.replace("\x00", "")
        if isinstance(v, list):
            return [expected(i) for i in v]
        return {expected(k): expected(i) for k, i in v.items()}

    cleaned, changed = clean_value(value)
    assert cleaned == expected(value)
    assert changed == ("\\u0000" in json.dumps(value))


def test_a_deeply_nested_payload_is_cleaned_without_recursion() -> None:
    value: Any = "x\x00"
    for _ in range(50_000):
        value = [value]
    cleaned, changed = clean_value(value)
    assert changed
    for _ in range(50_000):
        cleaned = cleaned[0]
    assert cleaned == "x"


def test_clean_leads_keeps_the_record_and_every_other_character() -> None:
    lead = Lead(
        source="s",
        ref="row 2",
        fields={"email": "a\x00@b.co", "city": "Łódź"},
        custom={"tags": ["x\x00", "y"]},
        raw={"E-mail": "a\x00@b.co"},
    )
    clean_leads([lead])
    assert lead.fields == {"email": "a@b.co", "city": "Łódź"}
    assert lead.custom == {"tags": ["x", "y"]}
    assert lead.raw == {"E-mail": "a@b.co"}


_TEXT = st.text(alphabet=st.sampled_from("ab\x00é\\u0"), max_size=6)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(_TEXT, _TEXT, max_size=3),
            st.dictionaries(_TEXT, _TEXT | st.lists(_TEXT, max_size=2), max_size=2),
            st.none() | _TEXT,
            _TEXT,
            st.dictionaries(_TEXT, _TEXT | st.integers(), max_size=3),
            st.dictionaries(_TEXT, _TEXT, max_size=2),
        ),
        max_size=6,
    )
)
def test_a_batch_cleaned_at_once_is_each_lead_cleaned(parts: list[tuple[Any, ...]]) -> None:
    """The whole-batch test for NULs (one orjson pass) only ever skips the per-lead walk
    when the walk would change nothing: a batch comes out the same either way."""

    def batch() -> list[Lead]:
        return [
            Lead(
                source="s",
                ref=ref,
                fields=dict(fields),
                custom=json.loads(json.dumps(custom)),
                source_id=source_id,
                raw=dict(raw),
                context=dict(context),
            )
            for fields, custom, source_id, ref, raw, context in parts
        ]

    def seen(leads: list[Lead]) -> list[tuple[Any, ...]]:
        return [(x.fields, x.custom, x.source_id, x.ref, x.raw, x.context) for x in leads]

    fast, walked = batch(), batch()
    clean_leads(fast)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(text_module, "_batch_may_hold_nul", lambda records: True)
        clean_leads(walked)
    assert seen(fast) == seen(walked)
