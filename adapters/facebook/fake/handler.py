"""The emulator's HTTP front: stdlib ThreadingHTTPServer handler, Graph paths and
version prefixes, query and form/JSON bodies merged into params as Graph does."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from adapters.facebook.fake.control import handle_control

if TYPE_CHECKING:
    from adapters.facebook.fake.server import FakeGraph

# A DELETE /{audience}/users URL longer than this is dropped: 250 rows of two hashes
# (email, phone) pass and 300 fail, as reported for the SDK (§E). GUESS: the length.
DELETE_URL_LIMIT = 44_000


class Handler(BaseHTTPRequestHandler):
    graph: FakeGraph
    protocol_version = "HTTP/1.1"
    server_version = "FakeGraph/1.0"

    def setup(self) -> None:
        super().setup()
        # headers and body go out as two writes; without NODELAY, Nagle + delayed ACK
        # would add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        ctype: str = "application/json; charset=UTF-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        if method == "DELETE" and len(self.path) > DELETE_URL_LIMIT:
            # §E: the SDK puts a DELETE's payload in the URL and Graph drops the
            # connection near 300 rows (RemoteDisconnected). GUESS: the exact length.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = [p for p in url.path.split("/") if p]
        if parts and parts[0] == "_fake":
            try:
                body = json.loads(raw) if raw else {}
                result = handle_control(self.graph, method, parts[1:], body)
                self._send(200, json.dumps(result).encode())
            except Exception as exc:
                self._send(400, json.dumps({"error": repr(exc)}).encode())
            return
        prefix = ""
        if parts and parts[0].startswith("v") and parts[0][1:].replace(".", "").isdigit():
            prefix = "/" + parts.pop(0)
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        ctype = self.headers.get("Content-Type", "")
        if raw and "json" in ctype:
            with contextlib.suppress(Exception):
                params.update(
                    {
                        k: v if isinstance(v, str) else json.dumps(v)
                        for k, v in json.loads(raw).items()
                    }
                )
        elif raw:
            params.update(
                urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            )
        address = self.server.server_address
        port = address[1] if isinstance(address, tuple) else 0
        host = self.headers.get("Host") or f"127.0.0.1:{port}"
        self_url = f"http://{host}{prefix}/" + "/".join(parts)
        status, headers, body = self.graph.handle_graph(method, parts, params, self_url)
        self._send(status, body, headers)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


# -------------------------------------------------------------------- demo world, CLI
