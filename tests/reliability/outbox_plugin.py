"""A destination that records what it is given, for tests that run `leadsync run` as
processes: LEADSYNC_EXTRA_PLUGINS="tests.reliability.outbox_plugin:plugin" and
OUTBOX_LOG=<file>. Each delivered row id is appended as one line (O_APPEND writes of a
few bytes do not interleave across processes), so a test can count deliveries."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from connector.ports import Delivered, DeliveryResult, Destination, OutboxRow, Runtime


class Recorder:
    name = "recorder"

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        fd = os.open(os.environ["OUTBOX_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            for row in rows:
                os.write(fd, f"{row.id} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        time.sleep(0.01)  # a delivery takes a moment, so replicas' claims overlap in time
        return [Delivered() for _ in rows]


class RecorderPlugin:
    name = "recorder"

    def destinations(self, runtime: Runtime) -> Sequence[Destination]:
        return [Recorder()]


plugin = RecorderPlugin()
