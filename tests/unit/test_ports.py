"""tests/ports.py: what the parallel suite's daemons rely on to never share a port."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.ports import free_port


def test_a_reserved_port_is_taken_for_others_and_still_open_to_our_server() -> None:
    port = free_port()
    # Another process binding it outright (as a daemon of another worker would, or a
    # bind(0) the kernel steered there) is refused while we hold it...
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", port))
    # ...and bind(0) is never handed it.
    for _ in range(500):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            assert probe.getsockname()[1] != port
    # Our own server (asyncio's, as uvicorn's: SO_REUSEADDR) listens on it and answers.

    async def serve() -> None:
        server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", port)
        async with server:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()

    asyncio.run(serve())


def test_two_reservations_differ() -> None:
    assert len({free_port() for _ in range(20)}) == 20
