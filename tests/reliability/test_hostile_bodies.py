"""Request bodies are capped per route before they are buffered: a declared length over
the cap is answered 413 without reading a byte, a chunked body is refused as soon as
it passes the cap. (Memory figures: see the report; tests assert what was read.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from adapters.facebook import FacebookPlugin
from adapters.facebook.fake import FakeGraph
from adapters.facebook.webhook import signature
from connector.config import load_config
from connector.runtime.daemon import Daemon
from connector.runtime.server import build_app
from connector.store import Store
from tests.e2e.test_facebook import fake, fb_config, serving  # noqa: F401

CHUNK = 64 * 1024
LIMIT = 256 * 1024


@pytest.fixture
def daemon(fake: FakeGraph, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    from connector.store import open_store

    page = fake.add_page("Shop")
    section = fb_config(fake, page).model_dump(mode="json")
    section["app_secret"] = fake.app_secret
    section["pages"] = [{"id": page.id, "access_token": page.token}]
    path = tmp_path / "leadsync.yaml"
    server = {"max_body": LIMIT, "route_max_body": {"/healthz": 10}}
    path.write_text(yaml.safe_dump({"facebook": section, "server": server}))
    store: Store = open_store(f"sqlite:///{tmp_path / 'b.db'}", upgrade=True)
    yield Daemon(load_config(path), store, {"facebook": FacebookPlugin()}, config_path=path)
    store.close()


def call(app: Any, path: str, headers: list[tuple[bytes, bytes]], chunks: int) -> tuple[int, int]:
    """Drive the ASGI app with a body of `chunks` x 64 KiB; (status, chunks it read)."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": read < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return int(start["status"]), read


def test_a_declared_length_over_the_cap_is_refused_without_reading(daemon: Daemon) -> None:
    app = build_app(daemon, daemon.plugins)
    path = daemon.config.facebook.webhook_path  # type: ignore[attr-defined]
    size = 150 * 1024 * 1024
    status, read = call(app, path, [(b"content-length", str(size).encode())], size // CHUNK)
    assert (status, read) == (413, 0)


def test_a_chunked_body_is_refused_once_it_passes_the_cap(daemon: Daemon) -> None:
    app = build_app(daemon, daemon.plugins)
    path = daemon.config.facebook.webhook_path  # type: ignore[attr-defined]
    status, read = call(app, path, [], chunks=150 * 1024 * 1024 // CHUNK)
    assert status == 413
    assert read == LIMIT // CHUNK + 1  # what passed the cap, and not one chunk more


def test_the_cap_is_per_route(daemon: Daemon) -> None:
    app = build_app(daemon, daemon.plugins)
    assert call(app, "/healthz", [(b"content-length", b"11")], 1) == (413, 0)


def test_over_http_a_big_body_gets_413_and_a_normal_one_is_stored(
    fake: FakeGraph,  # noqa: F811
    daemon: Daemon,
) -> None:
    path = daemon.config.facebook.webhook_path  # type: ignore[attr-defined]
    body = b'{"object":"page","entry":[]}'
    with serving(build_app(daemon, daemon.plugins)) as base:
        big = refused(base + path, b"x" * (8 * 1024 * 1024))
        streamed = refused(base + path, (b"x" * CHUNK for _ in range(200)))  # chunked
        good = requests.post(
            base + path,
            data=body,
            headers={"X-Hub-Signature-256": signature(fake.app_secret, body)},
            timeout=60,
        )
        alive = requests.get(base + "/healthz", timeout=10)
    assert big in (413, "closed") and streamed in (413, "closed")
    assert good.status_code == 200
    assert alive.status_code == 200


def refused(url: str, data: Any) -> int | str:
    """The status of a POST the server may answer before the client has sent it all; a
    client that is still sending may then see the connection close instead (also a
    refusal: the daemon did not read the body)."""
    try:
        return requests.post(url, data=data, timeout=60).status_code
    except requests.ConnectionError:
        return "closed"
