"""Serving an adapter's local emulator (`leadsync fake ...`, tests, the demo): an ASGI app
on uvicorn, on a daemon thread, over real loopback HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any


def serve_until_interrupted(stop: Callable[[], None]) -> None:
    """`leadsync fake ...`: keep the emulator's threads serving until Ctrl-C, then stop."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stop()


class ThreadedServer:
    """An ASGI app served on a thread; `start` returns its base URL once it listens."""

    def __init__(self, app: Any, name: str) -> None:
        self.app, self.name = app, name
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on `host:port` (0: any free port); OSError when it cannot."""
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))

        class Quiet(uvicorn.Server):
            def install_signal_handlers(self) -> None:  # tests and threads own signals
                pass

        # log_level=None: uvicorn sets its loggers' levels process-wide, so an emulator
        # beside a daemon (the demo, tests) would silence the daemon's server logs too.
        config = uvicorn.Config(
            self.app, log_level=None, access_log=False, lifespan="off", log_config=None
        )
        self._server = Quiet(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=self.name, daemon=True
        )
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise OSError(f"{self.name} could not listen on {host}:{port}")
            time.sleep(0.01)
        self.base_url = f"http://{host}:{sock.getsockname()[1]}"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None
