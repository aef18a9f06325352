"""The Graph API as the Facebook source uses it, through the facebook-business SDK.

Calls go through the SDK's `FacebookAdsApi.call` (its session signs every request with
`appsecret_proof` and encodes params as Graph expects) rather than its `Cursor`, for
two reasons: the usage headers must be read on every response, errors included (the
rate-limit lesson in reference/field-notes.md), and the SDK's Cursor stops at an empty
page that still carries `next`, which Graph does return.

What to do with an error is a lookup table (Airbyte's habit): transient errors are
retried here with backoff; throttling is not retried (the block lasts minutes to an hour:
the caller pauses that Page and goes on with the others); token and permission errors
are never retried and carry a message that says what a person must do.
"""

from __future__ import annotations

import enum
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from connector.sdk import API_CALLS, API_ERRORS

BUC_HEADER = "x-business-use-case-usage"
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})


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
    ) -> None:
        super().__init__(message)
        self.action = action
        self.code = code
        self.subcode = subcode
        self.status = status
        self.retry_after = retry_after
        """For THROTTLED: seconds until Meta says access returns (None: unknown)."""

    @property
    def advice(self) -> str:
        where = f"(#{self.code}{'/' + str(self.subcode) if self.subcode else ''})"
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
            return f"throttled by Meta {where}; paused for {wait}"
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


@dataclass
class Graph:
    """A Graph API client for one access token.

    `retries` transient failures are retried with exponential backoff and jitter;
    everything else raises `GraphError` at once."""

    base_url: str
    api_version: str
    app_id: str | None
    app_secret: str
    token: str
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        session = FacebookSession(self.app_id, self.app_secret, self.token, timeout=self.timeout)
        # The SDK reads the base URL from the session instance for node and edge calls.
        session.GRAPH = self.base_url.rstrip("/")
        self.api = FacebookAdsApi(session, api_version=self.api_version)
        self.calls = 0
        self.usage = 0.0  # peak BUC percentage seen on the last response

    def get(self, *path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET a node or edge; transient errors are retried."""
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential_jitter(multiplier=self.backoff, max=30, jitter=self.backoff),
            retry=retry_if_exception(
                lambda exc: isinstance(exc, GraphError) and exc.action is Action.RETRY
            ),
            sleep=self.sleep,
            reraise=True,
        )
        result: dict[str, Any] = retrying(self._get_once, path, dict(params or {}))
        return result

    def _get_once(self, path: tuple[str, ...], params: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        API_CALLS.labels("facebook").inc()
        try:
            response = self.api.call("GET", path, params=params)
        except FacebookRequestError as exc:
            headers = dict(exc.http_headers() or {})
            self.usage = peak_usage(headers)
            code, subcode = exc.api_error_code(), exc.api_error_subcode()
            API_ERRORS.labels("facebook", str(code)).inc()
            action = classify(code, subcode, bool(exc.api_transient_error()), exc.http_status())
            raise GraphError(
                action,
                exc.api_error_message() or "Graph API error",
                code=code,
                subcode=subcode,
                status=exc.http_status(),
                retry_after=regain_seconds(headers) if action is Action.THROTTLED else None,
            ) from None
        except requests.RequestException as exc:
            API_ERRORS.labels("facebook", "network").inc()
            raise GraphError(Action.RETRY, f"network error: {type(exc).__name__}") from None
        self.usage = peak_usage(response.headers())
        body = response.json()
        return body if isinstance(body, dict) else {"data": body}

    def pages(self, *path: str, params: Mapping[str, Any] | None = None) -> Iterator[list[Any]]:
        """Every page of an edge, following `paging.cursors.after` while `paging.next`
        exists. An empty page that carries `next` is not the end (Graph's own docs)."""
        query = dict(params or {})
        while True:
            body = self.get(*path, params=query)
            yield list(body.get("data") or [])
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                return
            query["after"] = after


def backoff_after(failures: int, base: float = 60.0, cap: float = 3600.0) -> float:
    """Pause for a throttle that announced no time: 1, 2, 4… minutes, capped, jittered."""
    wait: float = min(cap, base * 2 ** max(failures - 1, 0))
    return wait * random.uniform(0.8, 1.2)
