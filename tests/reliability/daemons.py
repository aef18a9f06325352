"""Helpers for tests that run `leadsync run` as real processes."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.ports import free_port as free_port  # re-exported: the tests import it from here


def write_config(path: Path, fake: Any, page: Any, **facebook: Any) -> Path:
    section = {
        "app_id": fake.app_id,
        "app_secret": fake.app_secret,
        "graph_url": fake.base_url,
        "verify_token": "verify-me",
        "pages": [{"id": page.id, "access_token": page.token}],
        "region": "MY",
        **facebook,
    }
    path.write_text(yaml.safe_dump({"facebook": section}))
    return path


def start_daemon(
    config: Path, store: str, port: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "connector", "-c", str(config), "--store", store, "run"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*cmd, "--port", str(port)],
            stdout=out,
            stderr=out,
            env={**os.environ, **(env or {})},
        )


def wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"daemon on port {port} did not come up")


@contextmanager
def round_robin(ports: list[int]) -> Iterator[str]:
    """A tiny forwarder: each request goes to the next replica, as a load balancer
    would send Meta's webhooks to any of them."""
    turn = itertools.cycle(ports)
    lock = threading.Lock()

    class Forward(BaseHTTPRequestHandler):
        def _relay(self) -> None:
            with lock:
                port = next(turn)
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size) if size else None
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            try:
                answer = requests.request(
                    self.command, f"http://127.0.0.1:{port}{self.path}", data=body,
                    headers=headers, timeout=10,
                )  # fmt: skip
                status, content = answer.status_code, answer.content
            except requests.RequestException:
                status, content = 502, b"replica down"
            self.send_response(status)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = _relay

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
