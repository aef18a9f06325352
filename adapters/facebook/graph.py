"""The Graph API as the Facebook source uses it, through the shared HTTP layer.

One `HttpClient` (connector/http.py) per source: one requests session for every Page,
timeouts, and retries decided by Meta's error table (errors.py, reference/external-apis.md
§D). Requests are signed as the facebook-business SDK signs them (`access_token` and
`appsecret_proof` in the query string, dict and list params as sorted compact JSON);
the SDK's own `FacebookAdsApi.call` is not used because it owns its session and its
retries, and its Cursor stops at an empty page that still carries `next`, which Graph
does return. Usage headers are read on every response, errors included.

The error table, throttle scopes and usage headers are adapters/facebook/errors.py. A
throttle is not slept through in the call (it lasts minutes to an hour): it is raised,
the source pauses the Pages it covers and goes on with the others. Transient errors
(1, 2, 5xx, resets) are retried here with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests

from adapters.facebook.errors import (
    APP,
    APP_USAGE_PAUSE,
    GRAPH_ERRORS,
    Action,
    GraphError,
    app_usage,
    as_int,
    backoff_after,
    classify,
    error_of,
    page_scope,
    peak_usage,
    regain_seconds,
)
from connector.sdk import HttpClient, HttpError, Scope, ThrottledError, metrics_hooks


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
        code, subcode = as_int(error.get("code")), as_int(error.get("error_subcode"))
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


__all__ = [
    "APP",
    "Action",
    "Graph",
    "GraphClient",
    "GraphError",
    "backoff_after",
    "classify",
    "page_scope",
    "peak_usage",
    "regain_seconds",
]
