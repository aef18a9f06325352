"""Segments: one filter language for saved views, bulk edits, exports and (next)
audiences. `Segment.of(text, catalogue)` parses and checks an expression; `query`
runs it in the store. The language is described in README.md ("Segments and views").
"""

from connector.segments.grammar import SegmentError, parse
from connector.segments.query import Segment, check_columns, check_sort, count, page, stream

__all__ = [
    "Segment",
    "SegmentError",
    "check_columns",
    "check_sort",
    "count",
    "page",
    "parse",
    "stream",
]
