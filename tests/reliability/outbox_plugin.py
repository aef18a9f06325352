"""A destination that records what it is given, for tests that run deliverers as
processes.

- In `leadsync run`: LEADSYNC_EXTRA_PLUGINS="tests.reliability.outbox_plugin:plugin".
- Alone: `python -m tests.reliability.outbox_plugin STORE_URL` delivers until no row is
  pending, then exits 0 (OUTBOX_LEASE, OUTBOX_MAX_ATTEMPTS, OUTBOX_BATCH set the
  outbox settings).

Each delivered row is appended to $OUTBOX_LOG as "id pid contact" (O_APPEND writes of a
few bytes do not interleave across processes), so a test can count deliveries and check
their order. A row whose payload has "poison" kills its process (SIGKILL) when handed
over, as a destination call that crashes the interpreter would."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence

from connector.ports import Delivered, DeliveryResult, Destination, OutboxRow, Runtime


class Recorder:
    name = "recorder"

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        if any(isinstance(r.payload, dict) and r.payload.get("poison") for r in rows):
            os.kill(os.getpid(), signal.SIGKILL)
        fd = os.open(os.environ["OUTBOX_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            for row in rows:
                os.write(fd, f"{row.id} {os.getpid()} {row.contact_id}\n".encode())
        finally:
            os.close(fd)
        time.sleep(0.01)  # a delivery takes a moment, so replicas' claims overlap in time
        return [Delivered() for _ in rows]


class RecorderPlugin:
    name = "recorder"

    def destinations(self, runtime: Runtime) -> Sequence[Destination]:
        return [Recorder()]


plugin = RecorderPlugin()


def main(url: str) -> int:
    from connector.config import OutboxConfig
    from connector.store import open_store
    from connector.sync import outbox

    settings = OutboxConfig(
        lease_seconds=float(os.environ.get("OUTBOX_LEASE", "300")),
        max_attempts=int(os.environ.get("OUTBOX_MAX_ATTEMPTS", "12")),
        batch=int(os.environ.get("OUTBOX_BATCH", "100")),
    )
    store = open_store(url)
    target = Recorder()
    while True:
        claimed, _ = outbox.deliver_batch(store, target, settings, f"worker:{os.getpid()}")
        if not claimed:
            if not outbox.depth(store).get(target.name, {}).get("pending"):
                return 0
            time.sleep(0.05)  # rows leased by a killed worker: wait for the lease


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
