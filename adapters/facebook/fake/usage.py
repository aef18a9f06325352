"""Rate limits as Graph reports them (reference §D): per-Page and per-business windows in
X-Business-Use-Case-Usage, the app's in X-App-Usage, and the throttle errors past them."""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Callable
from typing import Any

from adapters.facebook.fake.errors import THROTTLE_MESSAGES, GraphError


class Usage:
    """Calls per rolling hour of each scope (a Page id, a business id, or "app"), the
    budgets set on them, and throttles switched on by hand."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.throttles: dict[str, tuple[float, int, int]] = {}  # scope -> (until, code, regain)
        self.budgets: dict[str, int] = {}
        self.windows: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )

    def throttle(self, scope_id: str, seconds: float, code: int, regain_minutes: int) -> None:
        self.throttles[scope_id] = (self.clock() + seconds, code, regain_minutes)

    def set_budget(self, scope_id: str, calls_per_hour: int) -> None:
        self.budgets[scope_id] = calls_per_hour

    def count(
        self, scopes: list[str], total_calls: int
    ) -> tuple[dict[str, str], GraphError | None]:
        """Count the call per scope; headers with current percentages; throttle error if any."""
        now = self.clock()
        buc: dict[str, list[dict[str, Any]]] = {}
        error = None
        for scope in scopes:
            window = self.windows[scope]
            window.append(now)
            while window and window[0] <= now - 3600:
                window.popleft()
            budget = self.budgets.get(scope)
            pct = min(100, len(window) * 100 // budget) if budget else min(99, len(window) // 480)
            regain = 0
            until, code, regain_minutes = self.throttles.get(scope, (0.0, 0, 0))
            if until > now:
                pct, regain = 100, regain_minutes
                error = error or (code, regain)
            elif budget and len(window) > budget:
                pct, regain = 100, max(1, math.ceil((window[0] + 3600 - now) / 60))
                error = error or (80005, regain)
            buc[scope] = [
                {
                    "type": "leadgen",
                    "call_count": pct,
                    "total_cputime": max(1, pct // 2),
                    "total_time": max(1, pct // 2),
                    "estimated_time_to_regain_access": regain,
                    "ads_api_access_tier": "standard_access",
                }
            ]
        # The app-level limit (reference §D: code 4, X-App-Usage) over every call.
        app_window = self.windows["app"]
        app_window.append(now)
        while app_window and app_window[0] <= now - 3600:
            app_window.popleft()
        total = total_calls
        app_budget = self.budgets.get("app")
        app_pct = min(100, len(app_window) * 100 // app_budget) if app_budget else None
        app_until, app_code, _ = self.throttles.get("app", (0.0, 0, 0))
        if app_until > now or (app_budget and len(app_window) > app_budget):
            app_pct = 100
            error = (app_code if app_until > now else 4, 0)  # the app's limit comes first
        headers = {
            "X-App-Usage": json.dumps(
                {
                    "call_count": min(100, total // 2000) if app_pct is None else app_pct,
                    "total_cputime": min(100, total // 4000) if app_pct is None else app_pct // 2,
                    "total_time": min(100, total // 4000) if app_pct is None else app_pct // 2,
                }
            )
        }
        if buc:
            headers["X-Business-Use-Case-Usage"] = json.dumps(buc)
        if error:
            code, _ = error
            return headers, GraphError(
                code, THROTTLE_MESSAGES.get(code, f"(#{code}) Rate limited"), headers=headers
            )
        return headers, None
