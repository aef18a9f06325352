"""Per-client rate limiting for the collector: a token bucket per IP address.

In-process (per replica): a client spread over several replicas behind a balancer gets
each replica's allowance, which is enough to stop one browser or script from flooding
the store. The table of buckets is bounded: when it is full, the buckets that have
refilled (clients gone quiet) are dropped first, then the oldest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """`rate` requests a second on average per key, with bursts of up to `burst`."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Take one token for `key`; False when it has none left (answer 429)."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            if key not in self._buckets and len(self._buckets) >= self.max_keys:
                self._shrink(now)
            self._buckets[key] = (tokens - 1.0, now)
            return True

    def _shrink(self, now: float) -> None:
        full = [
            k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst
        ]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]
