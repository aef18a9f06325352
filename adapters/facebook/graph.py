"""The Graph API as the Facebook source uses it, through the shared HTTP layer.

One `HttpClient` (connector/http.py) per source: one requests session for every Page,
timeouts, and retries decided by Meta's error table below (reference/external-apis.md
§D). Requests are signed as the facebook-business SDK signs them (`access_token` and
`appsecret_proof` in the query string, dict and list params as sorted compact JSON);
the SDK's own `FacebookAdsApi.call` is not used because it owns its session and its
retries, and its Cursor stops at an empty page that still carries `next`, which Graph
does return. Usage headers are read on every response, errors included.

Throttles are scoped as Meta applies them. App-level ones (codes 4 and 17, or any
`X-App-Usage` metric at `app_usage_limit` %) pause the scope "app": every Page of the
app waits. Page-level ones (32, 613, the business-use-case family 80000-80014 with its
`X-Business-Use-Case-Usage` header) pause only "page:<id>". A throttle is not slept
through in the call (it lasts minutes to an hour): it is raised, the source pauses the
Pages it covers and goes on with the others. Transient errors (1, 2, 5xx, resets) are
retried here with backoff; token and permission errors are never retried and carry a
message that says what a person must do.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests

from connector.sdk import (
    RETRY,
    ErrorTable,
    Fail,
    HttpClient,
    HttpError,
    RateLimited,
    Scope,
    ThrottledError,
    metrics_hooks,
)

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


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _code_of(response: requests.Response) -> str | None:
    """The key of a Graph error in the table: its code, or "transient" for an error
    Meta marks `is_transient` whose code the table does not name."""
    error = error_of(response)
    code = _int(error.get("code"))
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


class GraphClient:
    """The app's connection to Graph: one `HttpClient` (session, timeouts, retries by
    `GRAPH_ERRORS`, call and error metrics) shared by every Page and token, and the
    "app" scope every call waits on."""

    def __init__(
        self,
        base_url: str,
        api_version: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        app_usage_limit: float = 95.0,
        stopping: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.version = api_version
        self.app_usage_limit = app_usage_limit
        self.http = HttpClient(
            "facebook",
            base_url,
            GRAPH_ERRORS,
            timeout=(min(5.0, timeout), timeout),
            attempts=retries + 1,
            backoff=backoff,
            # Nothing is slept through in a call: a throttle is raised at once, so the
            # source pauses its Pages and reads the others meanwhile.
            max_pause=0.0,
            hooks=metrics_hooks(),
            on_response=self._watch,
            stopping=stopping,
            sleep=sleep,
        )
        self.app_usage = 0.0  # peak X-App-Usage percentage on the last response

    @property
    def calls(self) -> int:
        """Graph calls made (retries included), throttled pre-checks not."""
        return self.http.calls

    def scope(self, name: str) -> Scope:
        return self.http.scope(name)

    def _watch(self, response: requests.Response) -> None:
        # At the limit the next calls would earn code 4: pause the app before they do.
        self.app_usage = app_usage(response.headers)
        if self.app_usage >= self.app_usage_limit:
            self.http.scope(APP).pause(APP_USAGE_PAUSE)

    def close(self) -> None:
        self.http.close()


class Graph:
    """Graph API calls for one Page with one access token, over the app's client."""

    def __init__(self, client: GraphClient, token: str, app_secret: str, page_id: str) -> None:
        self.client, self.page_id = client, page_id
        proof = hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        self._auth = {"access_token": token, "appsecret_proof": proof}
        self.usage = 0.0  # peak BUC percentage seen on the last response
        self.calls = 0  # requests this Page asked for (the client counts retries too)

    def get(self, *path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET a node or edge; transient errors are retried, the rest raise GraphError."""
        query = {k: _param(v) for k, v in (params or {}).items()} | self._auth
        url = "/" + "/".join((self.client.version, *path))
        self.calls += 1
        try:
            response = self.client.http.request(
                "GET", url, params=query, scope=[APP, page_scope(self.page_id)]
            )
        except HttpError as exc:
            raise self._error(exc) from None
        self.usage = peak_usage(response.headers)
        body = response.json()
        return body if isinstance(body, dict) else {"data": body}

    def _error(self, exc: HttpError) -> GraphError:
        scope = APP if getattr(exc, "scope", None) == APP else "page"
        response = exc.response
        if response is None:
            if isinstance(exc, ThrottledError):  # the scope was already paused: no call
                return GraphError(Action.THROTTLED, str(exc), retry_after=exc.wait, scope=scope)
            return GraphError(Action.RETRY, f"network error: {exc}")
        self.usage = peak_usage(response.headers)
        error = error_of(response)
        code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
        action = classify(code, subcode, error.get("is_transient") is True, exc.status)
        return GraphError(
            action,
            str(error.get("message") or "Graph API error"),
            code=code,
            subcode=subcode,
            status=exc.status,
            retry_after=regain_seconds(response.headers) if action is Action.THROTTLED else None,
            scope=scope if action is Action.THROTTLED else None,
        )

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


def _param(value: Any) -> str:
    """A query value as the SDK encodes it: dicts and lists as sorted compact JSON."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def backoff_after(failures: int, base: float = 60.0, cap: float = 3600.0) -> float:
    """Pause for a throttle that announced no time: 1, 2, 4… minutes, capped, jittered."""
    wait: float = min(cap, base * 2 ** max(failures - 1, 0))
    return wait * random.uniform(0.8, 1.2)
