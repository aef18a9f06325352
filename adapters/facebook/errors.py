"""Meta's error table (reference/external-apis.md §D): what each Graph error means,
which scope a throttle pauses, what a person must do, and the usage headers.

Throttles are scoped as Meta applies them. App-level ones (codes 4 and 17, or any
`X-App-Usage` metric at the configured limit) pause the scope "app": every Page of the
app waits. Page-level ones (32, 613, the business-use-case family 80000-80014 with its
`X-Business-Use-Case-Usage` header) pause only "page:<id>".
"""

from __future__ import annotations

import enum
import json
import random
from collections.abc import Mapping
from typing import Any

import requests

from connector.sdk import RETRY, ErrorTable, Fail, RateLimited

BUC_HEADER = "x-business-use-case-usage"
APP_USAGE_HEADER = "x-app-usage"
APP = "app"
"""The scope every call of the app waits on."""
APP_THROTTLES = frozenset({4, 17})
PAGE_THROTTLES = frozenset({32, 613, *range(80000, 80015)})
THROTTLE_CODES = APP_THROTTLES | PAGE_THROTTLES
UNANNOUNCED_WAIT = 60.0  # a throttle with no regain time: the first step of backoff_after
APP_USAGE_PAUSE = 300.0  # GUESS: Meta's app limit is a rolling hour; five minutes lets it move


def page_scope(page_id: str) -> str:
    """The scope of one Page's calls."""
    return f"page:{page_id}"


class Action(enum.Enum):
    RETRY = "retry"  # transient: retry now with backoff
    THROTTLED = "throttled"  # pause the scope for the announced time
    TOKEN = "token"  # the token is dead: a person must renew it
    PERMISSION = "permission"  # the token lacks a permission or role
    MISSING = "missing"  # the object does not exist or is not visible
    FAIL = "fail"  # a bad request: a bug or a bad config value, not retried


def classify(code: int | None, subcode: int | None, transient: bool, status: int | None) -> Action:
    """The Graph error table (reference/external-apis.md §D)."""
    if code in THROTTLE_CODES:
        return Action.THROTTLED
    if code == 190 or code == 102:
        return Action.TOKEN
    if code == 10 or (code is not None and 200 <= code <= 299):
        return Action.PERMISSION
    if (code == 100 and subcode == 33) or code == 803:
        return Action.MISSING
    if transient or code in (1, 2) or (status is not None and status >= 500):
        return Action.RETRY
    return Action.FAIL


def error_of(response: requests.Response) -> dict[str, Any]:
    """The `error` object of a Graph error body ({} when the body is not one)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    found = body.get("error") if isinstance(body, dict) else None
    return found if isinstance(found, dict) else {}


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _code_of(response: requests.Response) -> str | None:
    """The key of a Graph error in the table: its code, or "transient" for an error
    Meta marks `is_transient` whose code the table does not name."""
    error = error_of(response)
    code = as_int(error.get("code"))
    if code is None:
        return None
    if code not in THROTTLE_CODES and error.get("is_transient") is True:
        return "transient"
    return str(code)


def _table() -> ErrorTable:
    """Meta's error table as the HTTP layer reads it: what is retried, what pauses which
    scope, what fails. The failure's advice is `GraphError.advice` (it needs the
    subcode); `classify` gives the same verdict for the source's own handling."""
    never = Fail("see the Graph error: it is not retried")
    codes: dict[str, Any] = {"1": RETRY, "2": RETRY, "transient": RETRY}
    codes |= {str(c): RateLimited(APP, UNANNOUNCED_WAIT) for c in APP_THROTTLES}
    codes |= {str(c): RateLimited("page", UNANNOUNCED_WAIT) for c in PAGE_THROTTLES}
    codes |= {str(c): never for c in (10, 100, 102, 190, 368, 803, *range(200, 300))}
    return ErrorTable(codes=codes, code_of=_code_of, wait_of=lambda r: regain_seconds(r.headers))


GRAPH_ERRORS = _table()

_TOKEN_ADVICE = {
    458: "the app was removed from the account that issued the token",
    459: "the user is checkpointed: they must log in to Facebook",
    460: "the password changed",
    463: "the token expired",
    464: "the user is not confirmed",
    467: "the token is invalid",
}


class GraphError(RuntimeError):
    """An error answer from the Graph API, classified, with advice a person can act on."""

    def __init__(
        self,
        action: Action,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        scope: str | None = None,
    ) -> None:
        super().__init__(message)
        self.action = action
        self.code = code
        self.subcode = subcode
        self.status = status
        self.retry_after = retry_after
        """For THROTTLED: seconds until Meta says access returns (None: unknown)."""
        self.scope = scope
        """For THROTTLED: `APP` (every Page of the app waits) or "page" (this Page)."""

    @property
    def where(self) -> str:
        """The code and subcode as Meta's docs write them: `(#190/463)`."""
        return f"(#{self.code}{'/' + str(self.subcode) if self.subcode else ''})"

    @property
    def advice(self) -> str:
        where = self.where
        if self.action is Action.TOKEN:
            why = _TOKEN_ADVICE.get(self.subcode or 0, "the token was rejected")
            return (
                f"{why} {where}: renew the access token (a System User token does not "
                "expire) and update facebook.system_user_token or the Page's access_token"
            )
        if self.action is Action.PERMISSION:
            return (
                f"permission denied {where}: {self}. Grant the token leads_retrieval, "
                "pages_show_list, pages_read_engagement, pages_manage_ads and ads_management, "
                "and check Leads Access Manager lets this app read leads"
            )
        if self.action is Action.THROTTLED:
            wait = f"{self.retry_after:.0f} s" if self.retry_after else "a while"
            whom = "the whole app: every Page" if self.scope == APP else "this Page"
            return f"throttled by Meta {where}; {whom} paused for {wait}"
        return f"{self} {where}"


def regain_seconds(headers: Mapping[str, str]) -> float | None:
    """The longest `estimated_time_to_regain_access` (minutes) in the BUC header, in
    seconds; None when the header is absent or says nothing."""
    usage = usage_of(headers)
    minutes = [
        float(entry.get("estimated_time_to_regain_access") or 0)
        for entries in usage.values()
        for entry in entries
    ]
    longest = max(minutes, default=0.0)
    return longest * 60 if longest > 0 else None


def usage_of(headers: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The parsed X-Business-Use-Case-Usage header ({} when absent or malformed)."""
    raw = next((v for k, v in headers.items() if k.lower() == BUC_HEADER), None)
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def peak_usage(headers: Mapping[str, str]) -> float:
    """The highest usage percentage in the BUC header (0 when absent)."""
    return max(
        (
            float(entry.get(metric) or 0)
            for entries in usage_of(headers).values()
            for entry in entries
            for metric in ("call_count", "total_cputime", "total_time")
        ),
        default=0.0,
    )


def app_usage(headers: Mapping[str, str]) -> float:
    """The highest percentage in the X-App-Usage header (0 when absent or malformed)."""
    raw = next((v for k, v in headers.items() if k.lower() == APP_USAGE_HEADER), None)
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return 0.0
    if not isinstance(parsed, dict):
        return 0.0
    found = [v for v in parsed.values() if isinstance(v, int | float)]
    return float(max(found, default=0))


def backoff_after(failures: int, base: float = 60.0, cap: float = 3600.0) -> float:
    """Pause for a throttle that announced no time: 1, 2, 4… minutes, capped, jittered."""
    wait: float = min(cap, base * 2 ** max(failures - 1, 0))
    return wait * random.uniform(0.8, 1.2)
