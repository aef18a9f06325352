"""What a normalising worker process loads: its memory is paid once per core."""

from __future__ import annotations

import pickle
import subprocess
import sys

from connector.identity import normalise_many
from connector.pipeline import workers

HEAVY = ("sqlalchemy", "alembic", "psycopg", "structlog", "starlette", "uvicorn")


def test_a_worker_imports_neither_the_store_nor_sqlalchemy() -> None:
    # A fresh interpreter does what a worker does: the fork server's preloads, then
    # unpickling its initializer and its task function by module. An initializer that
    # lived in pipeline.py once cost every worker ~40 MB of SQLAlchemy and the store.
    sent = pickle.dumps((workers.init, normalise_many)).hex()
    code = (
        "import sys, pickle, connector.identity, connector.workers\n"
        "pickle.loads(bytes.fromhex(sys.stdin.read()))\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=sent, check=True, capture_output=True, text=True
    ).stdout.strip()
    assert out == "", f"a worker would import {out}"
