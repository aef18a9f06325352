"""A tiny plugin for runtime tests, loadable in a subprocess through
LEADSYNC_EXTRA_PLUGINS="tests.runtime.fake_plugin:plugin".

Environment (subprocess tests): FAKE_JOBS = comma list of "tick", "fail", "slow";
FAKE_DIR = a directory the jobs write marker files to; FAKE_SLOW_BATCHES = how many
batches the slow job runs (each waits until FAKE_DIR/go exists or 0.2 s passes)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from connector.ports import Job, Runtime


def _dir() -> Path:
    return Path(os.environ.get("FAKE_DIR", "."))


def tick(runtime: Runtime) -> None:
    path = _dir() / "tick"
    path.write_text(str(int(path.read_text() or 0) + 1 if path.exists() else 1))


def fail(runtime: Runtime) -> None:
    raise RuntimeError("the fake source is broken")


def slow(runtime: Runtime) -> dict[str, int]:
    """Batches of work; checks `stopping` between them, like a real source."""
    (_dir() / "slow.started").write_text("1")
    done = 0
    for batch in range(int(os.environ.get("FAKE_SLOW_BATCHES", "1000"))):
        if runtime.stopping.is_set():
            break
        time.sleep(0.2)
        (_dir() / "slow.batches").write_text(str(batch + 1))
        done = batch + 1
    (_dir() / "slow.finished").write_text("1")
    return {"batches": done}


JOBS = {"tick": tick, "fail": fail, "slow": slow}


class FakePlugin:
    name = "fake"

    def jobs(self, runtime: Runtime) -> Sequence[Job]:
        wanted = filter(None, os.environ.get("FAKE_JOBS", "tick").split(","))
        return [Job(id=f"fake.{name}", run=JOBS[name], every=3600) for name in wanted]

    def routes(self, runtime: Runtime) -> Sequence[BaseRoute]:
        def hello(request: Request) -> Response:
            runtime.wake("fake.tick")
            return PlainTextResponse("hello")

        return [Route("/webhooks/fake", hello, methods=["GET", "POST"])]


plugin = FakePlugin()
