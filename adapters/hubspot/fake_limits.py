"""The HubSpot emulator's API limits (§G): a rolling window per account with the
`X-HubSpot-RateLimit-*` headers, a daily limit, and search's own 5 requests/s without
headers. Header names are HubSpot's documented ones [2nd: usage-details guide]."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.hubspot.fake_state import HubSpotError


def _limited(policy: str, text: str) -> HubSpotError:
    # The 429 body HubSpot sends [2nd]; `category` is what its SDKs switch on.
    return HubSpotError(
        429,
        "RATE_LIMITS",
        f"You have reached your {text} limit.",
        errorType="RATE_LIMIT",
        policyName=policy,
    )


@dataclass
class Limits:
    """Per-account limits. `clock` is seconds; the day is the UTC day (GUESS: HubSpot
    resets at midnight in the account's time zone)."""

    clock: Callable[[], float]
    max_per_interval: int = 100  # Free/Starter private apps: 100 per 10 s
    interval_ms: int = 10_000
    daily: int = 250_000
    search_per_second: int = 5
    _calls: deque[float] = field(default_factory=deque)
    _searches: deque[float] = field(default_factory=deque)
    _day: int = -1
    _today: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def used_today(self) -> int:
        return self._today

    def take(self, search: bool) -> tuple[dict[str, str], HubSpotError | None]:
        """Count one request: the headers to send and, if over a limit, the 429."""
        with self._lock:
            now = self.clock()
            day = int(now // 86_400)
            if day != self._day:
                self._day, self._today = day, 0
            window = self.interval_ms / 1000
            while self._calls and self._calls[0] <= now - window:
                self._calls.popleft()
            while self._searches and self._searches[0] <= now - 1.0:
                self._searches.popleft()
            error: HubSpotError | None = None
            if self._today >= self.daily:
                error = _limited("DAILY", "daily")
            elif search and len(self._searches) >= self.search_per_second:
                error = _limited("SECONDLY", "secondly")
            elif not search and len(self._calls) >= self.max_per_interval:
                error = _limited("TEN_SECONDLY_ROLLING", "ten_secondly_rolling")
            if error is None:
                self._today += 1
                (self._searches if search else self._calls).append(now)
            if search:
                return {}, error  # search responses carry no rate-limit headers (§G)
            headers = {
                "X-HubSpot-RateLimit-Daily": str(self.daily),
                "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily - self._today)),
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.interval_ms),
                "X-HubSpot-RateLimit-Max": str(self.max_per_interval),
                "X-HubSpot-RateLimit-Remaining": str(
                    max(0, self.max_per_interval - len(self._calls))
                ),
            }
            return headers, error
