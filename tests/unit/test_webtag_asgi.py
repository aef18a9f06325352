"""The collector's bare-ASGI body reader: a body in pieces is joined, one that passes
the cap is refused as soon as it does (the rest is not read), a client that goes away
mid-body ends the read."""

from __future__ import annotations

import asyncio
from typing import Any

from adapters.webtag.asgi import read_body


def _receiver(messages: list[dict[str, Any]]) -> tuple[Any, list[int]]:
    taken: list[int] = []

    async def receive() -> dict[str, Any]:
        taken.append(1)
        return messages[len(taken) - 1]

    return receive, taken


def _piece(body: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


def test_pieces_are_joined_and_a_body_past_the_cap_is_refused_early() -> None:
    receive, _ = _receiver([_piece(b"ab", True), _piece(b"cd", True), _piece(b"e", False)])
    assert asyncio.run(read_body(receive, 5)) == b"abcde"
    pieces = [_piece(b"abc", True), _piece(b"def", True), _piece(b"never read", False)]
    receive, taken = _receiver(pieces)
    assert asyncio.run(read_body(receive, 5)) is None
    assert len(taken) == 2
    receive, _ = _receiver([_piece(b"abcdef", False)])
    assert asyncio.run(read_body(receive, 5)) is None
    receive, _ = _receiver([_piece(b"ab", True), {"type": "http.disconnect"}])
    assert asyncio.run(read_body(receive, 5)) == b"ab"
