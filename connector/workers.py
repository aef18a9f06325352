"""Set-up of a normalising worker process (see pipeline.Pipeline).

Kept apart from pipeline.py on purpose: a worker unpickles its initializer by module,
and importing the pipeline would drag SQLAlchemy and the store into every worker
(~40 MB each). This module imports only the standard library.
"""

from __future__ import annotations

import gc
import os
import threading
import time


def init(parent: int, thresholds: tuple[int, int, int]) -> None:
    """Set up a normalising worker: rarer collections, and exit when `parent` is gone."""
    gc.set_threshold(*thresholds)
    threading.Thread(
        target=_exit_without, args=(parent,), name="leadsync-parent-watch", daemon=True
    ).start()


def _exit_without(parent: int, every: float = 1.0) -> None:
    # A worker started through the fork server is the server's child, not ours, and it
    # holds both ends of its task queue, so nothing tells it when the writer is killed
    # with -9: without this it would wait for work forever (and keep the fork server
    # alive), one orphaned pair per killed import or daemon.
    while _alive(parent):
        time.sleep(every)
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process stays a zombie until its own parent reaps it
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
