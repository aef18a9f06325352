"""The ingest hot path's shortcuts give what the plain code would."""

from __future__ import annotations

import gc
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import identity, normalize
from connector.pipeline import _rarer_gc
from connector.store.bulk import _convert_columns

_shared = [{"kind": "bench"}, None, 7, "x"]
_cell = st.one_of(
    st.sampled_from(range(len(_shared))).map(lambda i: _shared[i]),  # the same object
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),  # a fresh one
    st.none(),
    st.text(max_size=5),
)


def _tag(value: Any) -> Any:
    return ("converted", repr(value))


@given(st.lists(st.tuples(_cell, _cell, _cell), min_size=1, max_size=30))
def test_convert_columns_equals_converting_each_value(rows: list[tuple[Any, Any, Any]]) -> None:
    # Columns 0 and 2 converted, column 1 passed through, as insert_values does.
    procs = [(0, _tag), (2, _tag)]
    expected = [(_tag(a), b, _tag(c)) for a, b, c in rows]
    assert [tuple(r) for r in _convert_columns(rows, procs)] == expected


def test_rarer_gc_restores_the_thresholds() -> None:
    before = gc.get_threshold()
    with _rarer_gc():
        assert all(a >= b for a, b in zip(gc.get_threshold(), before, strict=True))
    assert gc.get_threshold() == before


def test_a_batch_is_written_without_a_young_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch's records, plan and rows live until its commit and are freed by reference
    # counting: a collection in between only walks them (at a first threshold of 50,000
    # it ran twice a 5,000-record batch, 2-5 µs a lead of the writer). Normalised
    # inline here (workers=0), so the batch keeps even more alive than the writer does.
    from connector import pipeline
    from connector.model import Lead
    from connector.pipeline import Pipeline
    from connector.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/gc.db", upgrade=True)
    leads = [
        Lead(
            source="gc",
            ref=f"row {i}",
            fields={"email": f"anna.{i}@example.org", "first_name": "Anna", "city": "Kraków"},
            source_id=str(i),
            raw={"email": f"anna.{i}@example.org", "name": "Anna", "city": "Kraków"},
        )
        for i in range(5000)
    ]
    young: list[int] = []
    default = gc.get_threshold()

    def count(phase: str, info: dict[str, Any]) -> None:
        # Only collections while the ingest's thresholds are in force (the test's
        # own set-up and the store's closing run at the default ones).
        if phase == "start" and gc.get_threshold() != default:
            young.append(info["generation"])

    # Only the collections the thresholds trigger: not the one after each commit.
    monkeypatch.setattr(pipeline, "_collect_batch_garbage", lambda: None)
    gc.collect()  # start from empty generations, whatever ran before
    gc.callbacks.append(count)
    try:
        stats = Pipeline(store, workers=0, batch_size=5000).ingest("gc", leads)
    finally:
        gc.callbacks.remove(count)
        store.close()
    assert stats.created == 5000
    assert young == []


# -- folding: ASCII shortcuts, the casefold shortcut, the per-character cache ------------

_FOLD_CHARS = "aAzZ09 _-.,@'ßŁłĐđøØæœıħİéÉẞǅﬁ\u0301\u00a0ỆễǸ名字"
_texts = st.one_of(
    st.text(max_size=12),  # any Unicode
    st.text(alphabet=_FOLD_CHARS, max_size=12),  # the letters folding treats apart
    st.text(alphabet=st.characters(max_codepoint=127), max_size=12),  # ASCII
)


def _fold_plain(value: str) -> str:
    """normalize._fold as written before its ASCII shortcut."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    for letter, plain in normalize._UNSPLIT.items():
        bare = bare.replace(letter, plain)
    return " ".join(re.sub(r"[^\w]+", " ", bare).split())


def _better_plain(current: str, new: str) -> str | None:
    """normalize.better_spelling as written before its shortcuts."""
    if current == new or _fold_plain(current) != _fold_plain(new):
        return None

    def information(text: str) -> tuple[int, int]:
        nfc = unicodedata.normalize("NFC", text)
        marked = sum(1 for c in nfc if _fold_plain(c) != c.casefold())
        return marked, int(text not in (text.upper(), text.lower()))

    have, offered = information(current), information(new)
    if have == offered:
        return None
    return current if have > offered else new


def _words_plain(text: str) -> frozenset[str]:
    """identity._fold_words as written before its ASCII shortcut."""
    decomposed = unicodedata.normalize("NFKD", text.translate(identity._FOLD))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return frozenset(identity._TOKEN.findall(plain))


@given(_texts)
def test_fold_equals_the_plain_fold(text: str) -> None:
    assert normalize._fold(text) == _fold_plain(text)
    assert identity._fold_words(text) == _words_plain(text)


@given(_texts, _texts)
def test_better_spelling_equals_the_plain_rule(a: str, b: str) -> None:
    assert normalize.better_spelling(a, b) == _better_plain(a, b)
    # Spellings of one value, where the shortcuts decide most.
    for other in (a.upper(), a.lower(), a.casefold(), _fold_plain(a)):
        assert normalize.better_spelling(a, other) == _better_plain(a, other)
