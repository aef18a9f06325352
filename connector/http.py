"""The HTTP layer every adapter calls its API through.

One `requests.Session` per client (connection reuse), connect and read timeouts on every
call, and retries (tenacity) decided by the adapter's own `ErrorTable`: each HTTP status
or vendor error code is a `RETRY`, a `RateLimited` (pause a `Scope`, then try again), a
`Fail` (stop, with what a person can do about it) or `IGNORE` (the response is the
answer). Nothing here imports the runtime: call, error and throttle counts go to the
`Hooks` callbacks the caller passes (the daemon wires them to its prometheus metrics).
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class RateLimited:
    """The API throttled us: pause `scope` (an account, an app, one endpoint family)
    for the wait the response names (headers), else `default_wait` seconds.

    A scope may name a family ("page"): the call's own member of it ("page:123", one
    of the scopes the call waits on) is paused, so one table serves every Page."""

    scope: str
    default_wait: float = 10.0


@dataclass(frozen=True, slots=True)
class Fail:
    """A permanent error: no retry. `action` is what a person can do about it."""

    action: str


Action = Literal["retry", "ignore"] | RateLimited | Fail
RETRY: Action = "retry"
IGNORE: Action = "ignore"


def _no_code(response: requests.Response) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class ErrorTable:
    """How one API's errors are handled, by vendor error code first, then HTTP status.

    A status in neither map: 5xx and 408 are retried, other 4xx fail with `fallback`."""

    statuses: Mapping[int, Action] = field(default_factory=dict)
    codes: Mapping[str, Action] = field(default_factory=dict)
    code_of: Callable[[requests.Response], str | None] = _no_code
    """The vendor's error code in a response (e.g. HubSpot's `category`), or None."""
    wait_of: Callable[[requests.Response], float | None] | None = None
    """Seconds to wait the vendor's own headers name; Retry-After is read regardless."""
    fallback: str = "check the request and the credentials, then retry"

    def classify(self, response: requests.Response) -> Action | None:
        """None for a success (2xx/3xx), else the action for this error response."""
        if response.status_code < 400:
            return None
        code = self.code_of(response)
        if code is not None and code in self.codes:
            return self.codes[code]
        if response.status_code in self.statuses:
            return self.statuses[response.status_code]
        if response.status_code >= 500 or response.status_code == 408:
            return RETRY
        return Fail(self.fallback)

    def wait(self, response: requests.Response) -> float | None:
        """The wait the response asks for: the vendor's headers, else Retry-After."""
        if self.wait_of is not None:
            found = self.wait_of(response)
            if found is not None:
                return found
        return retry_after(response.headers.get("Retry-After"))


def retry_after(value: str | None, now: Clock = time.time) -> float | None:
    """Retry-After as seconds (RFC 9110: delta-seconds or an HTTP date); None if absent
    or unreadable (a garbled header must not stop the retry)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


class Scope:
    """What a throttle applies to (one account, one app, an endpoint family), shared by
    every call in it: a pause any caller can set and every caller waits out, and an
    optional pace of at most `rate` calls per `per` seconds (HubSpot search: 5/s)."""

    def __init__(
        self,
        name: str,
        rate: int | None = None,
        per: float = 1.0,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.name, self.rate, self.per = name, rate, per
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._until = 0.0
        self._recent: deque[float] = deque()

    def pause(self, seconds: float) -> None:
        """Nobody in the scope calls for `seconds` from now (a longer pause stays)."""
        with self._lock:
            self._until = max(self._until, self._clock() + max(0.0, seconds))

    def paused_for(self) -> float:
        """Seconds until the pause ends (0: not paused)."""
        with self._lock:
            return max(0.0, self._until - self._clock())

    def acquire(self, stopping: threading.Event | None = None) -> float:
        """Wait until a call is allowed (pause over, pace kept), count it, and return the
        seconds waited. With `stopping` set, returns at once without counting."""
        waited = 0.0
        while not (stopping is not None and stopping.is_set()):
            with self._lock:
                now = self._clock()
                delay = self._until - now
                if delay <= 0 and self.rate is not None:
                    while self._recent and self._recent[0] <= now - self.per:
                        self._recent.popleft()
                    if len(self._recent) >= self.rate:
                        delay = self._recent[0] + self.per - now
                if delay <= 0:
                    if self.rate is not None:
                        self._recent.append(now)
                    return waited
            # Sleep in short steps so a stopping daemon is not held by a long pause.
            step = min(delay, 1.0)
            self._sleep(step)
            waited += step
        return waited


@dataclass(slots=True)
class Hooks:
    """Callbacks for the caller's metrics; labels are adapter names and codes only."""

    call: Callable[[str], None] = lambda adapter: None
    error: Callable[[str, str], None] = lambda adapter, code: None
    throttled: Callable[[str, float], None] = lambda adapter, seconds: None


def member(scope: str, names: Sequence[str]) -> str:
    """The scope a throttle pauses: `scope` itself, or the call's member of the family
    it names ("page" -> "page:123" when the call waits on "page:123")."""
    if scope in names:
        return scope
    return next((n for n in names if n.startswith(scope + ":")), scope)


class HttpError(RuntimeError):
    """An API call that did not succeed; `action` says what a person can do."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        action: str = "",
        response: requests.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.action, self.response = status, code, action, response


class TransientError(HttpError):
    """Worth retrying (5xx, timeouts, connection resets); raised once retries run out."""


class ThrottledError(TransientError):
    """The API throttled the call and retries ran out; `scope` is paused `wait` seconds."""

    def __init__(self, message: str, *, scope: str, wait: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.scope, self.wait = scope, wait


class HttpClient:
    """One API's client: base URL, session, timeouts, error table, scopes and hooks."""

    def __init__(
        self,
        adapter: str,
        base_url: str,
        table: ErrorTable,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_pause: float = 60.0,
        scopes: Mapping[str, Scope] | None = None,
        hooks: Hooks | None = None,
        on_response: Callable[[requests.Response], None] | None = None,
        stopping: threading.Event | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.adapter, self.base_url, self.table = adapter, base_url.rstrip("/"), table
        self.timeout, self.attempts = timeout, attempts
        self.backoff, self.max_backoff = backoff, max_backoff
        # A throttle longer than this (a daily limit) is not slept through in the call:
        # it is raised, so the job ends and reports the system paused until then.
        self.max_pause = max_pause
        self.scopes: dict[str, Scope] = dict(scopes or {})
        self.hooks = hooks or Hooks()
        self.on_response, self.stopping, self._sleep = on_response, stopping, sleep
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        self.calls = 0
        self.errors: Counter[str] = Counter()
        self._jitter = random.Random()

    def scope(self, name: str) -> Scope:
        """The named scope, made on first use (unpaced)."""
        if name not in self.scopes:
            self.scopes[name] = Scope(name)
        return self.scopes[name]

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        scope: str | Sequence[str] | None = None,
    ) -> requests.Response:
        """Call `path` (relative to the base URL), waiting on each `scope` first and
        retrying as the error table says. Returns the response (a success or an IGNOREd
        error); raises `HttpError` (Fail), `ThrottledError` (a throttle longer than
        `max_pause`, or retries spent) or `TransientError` (retries spent)."""
        names = [scope] if isinstance(scope, str) else list(scope or ())

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, ThrottledError):
                return exc.wait <= self.max_pause
            return isinstance(exc, TransientError)

        def wait(state: RetryCallState) -> float:
            # A throttle of a scope this call waits on is served by that scope's pause
            # (so every caller in the scope waits, not just this one); a throttle of
            # another scope is slept here; other errors back off with jitter.
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, ThrottledError):
                return 0.0 if exc.scope in names else exc.wait
            top = min(self.max_backoff, self.backoff * 2 ** (state.attempt_number - 1))
            return self._jitter.uniform(top / 2, top)

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            retry=retry_if_exception(retryable),
            wait=wait,
            sleep=self._sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._once(method, path, json, params, names)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    def _once(
        self,
        method: str,
        path: str,
        body: Any,
        params: Mapping[str, str] | None,
        names: list[str],
    ) -> requests.Response:
        for name in names:
            paused = self.scope(name).paused_for()
            if paused > self.max_pause:
                # Known to fail until then (a daily limit): no call, no hour-long sleep.
                raise ThrottledError(
                    f"{self.adapter}: {name} is paused for {paused:.0f}s",
                    scope=name,
                    wait=paused,
                    action=f"wait: {name} is throttled for {paused:.0f}s",
                )
        for name in names:
            waited = self.scope(name).acquire(self.stopping)
            if waited:
                self.hooks.throttled(self.adapter, waited)
        if self.stopping is not None and self.stopping.is_set():
            raise HttpError(f"{self.adapter}: stopping", action="none: the daemon is stopping")
        self.calls += 1
        self.hooks.call(self.adapter)
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        try:
            response = self.session.request(
                method, url, json=body, params=params, timeout=self.timeout
            )
        except requests.Timeout as exc:
            self._count("timeout")
            raise TransientError(f"{self.adapter}: {method} {path} timed out") from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            # ChunkedEncodingError: the connection died mid-answer (the request may have
            # been handled; retries rely on the calls being idempotent, as upserts are).
            self._count("connection")
            raise TransientError(f"{self.adapter}: {method} {path}: connection lost") from exc
        if self.on_response is not None:
            self.on_response(response)
        action = self.table.classify(response)
        if action is None or action == IGNORE:
            return response
        code = self.table.code_of(response) or str(response.status_code)
        self._count(code)
        message = f"{self.adapter}: {method} {path} -> HTTP {response.status_code} ({code})"
        kw: dict[str, Any] = {"status": response.status_code, "code": code, "response": response}
        if isinstance(action, RateLimited):
            wait = self.table.wait(response)
            wait = action.default_wait if wait is None else wait
            scope = member(action.scope, names)
            self.scope(scope).pause(wait)
            raise ThrottledError(
                message,
                scope=scope,
                wait=wait,
                action=f"wait: {scope} is throttled for {wait:.0f}s",
                **kw,
            )
        if isinstance(action, Fail):
            raise HttpError(f"{message}: {action.action}", action=action.action, **kw)
        raise TransientError(message, action="retry later", **kw)

    def _count(self, code: str) -> None:
        self.errors[code] += 1
        self.hooks.error(self.adapter, code)
