"""Free TCP ports for the daemons, emulators and clusters tests start as processes.

A port found by binding port 0 and closing the socket is only free until someone else
binds it: with the suite on several xdist workers (and other suites on the same box),
another process's `bind(("127.0.0.1", 0))` can be handed the same port before our
daemon binds it, and that daemon then fails to listen. So the probe socket is kept
bound, with SO_REUSEADDR, for the rest of the worker's life: the kernel hands a port
that has a bound socket neither to another `bind(0)` nor to an outgoing connection,
while the daemon (uvicorn and PostgreSQL both set SO_REUSEADDR, and the probe never
listens) can still bind and listen on it. A test that needs a port nobody can take
keeps its own socket, as before.
"""

from __future__ import annotations

import socket

# Held, never listening, until the worker exits (one file descriptor a port).
_reserved: list[socket.socket] = []


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` no other process is given until this process exits."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    probe.bind((host, 0))
    _reserved.append(probe)
    return int(probe.getsockname()[1])
