"""The ingest hot path's shortcuts give what the plain code would."""

from __future__ import annotations

import gc
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

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
