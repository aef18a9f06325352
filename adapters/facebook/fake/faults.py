"""The faults a test or benchmark can switch on: Graph errors, latency, webhook losses."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Faults:
    """What goes wrong on purpose; every rate draws from the emulator's seeded fault RNG."""

    error_rate: float = 0.0  # transient code 1/2, HTTP 500, is_transient true
    latency: float = 0.0  # seconds added to every Graph request
    empty_page_rate: float = 0.0  # /leads page returned empty but still with paging.next
    seed: int = 0
    # webhooks
    drop_rate: float = 0.0  # a notification never leaves
    duplicate_rate: float = 0.0  # a delivered notification is delivered again
    fail_first_n: int = 0  # first n attempts of every delivery fail as if the network did
    batch: bool = False  # changes queued together go out in one POST
    retry_schedule: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.5, 1.0, 2.0])
