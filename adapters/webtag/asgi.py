"""The few pieces of bare ASGI the collector's POST is written in.

The collector answers thousands of small requests a second on the daemon's one event
loop, where every microsecond of Python is a microsecond no other request gets.
starlette's `Request` and `Response` objects (a header mapping built per request, a
body stream, a response rendered through `json.dumps`, its headers built anew, and
one more exception-handling wrapper) are skipped: these helpers read the scope's
header list once and send prepared header lists. The route still sits in the daemon's
starlette app, behind its body cap (`server.BodyLimit`) and error handling.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

TEXT = (b"content-type", b"text/plain; charset=utf-8")
JSON = (b"content-type", b"application/json")


def headers_of(scope: Scope, wanted: Iterable[bytes]) -> dict[bytes, bytes]:
    """The first value of each `wanted` header (lower-case names, as ASGI gives them)."""
    wanted = set(wanted)
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in wanted and name not in found:
            found[name] = value
    return found


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request's body, or None as soon as it passes `limit` bytes (the rest is not
    read: the answer is 413 whatever follows)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= limit else None
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def answer(send: Send, status: int, body: bytes, headers: RawHeaders) -> None:
    """Send a whole response: `headers` plus its content-length."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
