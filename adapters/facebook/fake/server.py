"""The emulated Graph API as one object: the world plus its server, faults, rate limits,
webhooks and the audience/Conversions API state, with what a test calls on it."""

from __future__ import annotations

import collections
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from http.server import ThreadingHTTPServer
from typing import Any

import requests

from adapters.facebook.fake.audiences import Audiences
from adapters.facebook.fake.errors import GraphError
from adapters.facebook.fake.faults import Faults
from adapters.facebook.fake.handler import Handler
from adapters.facebook.fake.routes import auth, route
from adapters.facebook.fake.usage import Usage
from adapters.facebook.fake.webhooks import WebhookSender
from adapters.facebook.fake.world import World


class FakeGraph(World):
    """Meta's Graph API (Lead Ads, custom audiences, Conversions API) over loopback HTTP.

    Built from shared/reference/external-apis.md, not from our client; a behaviour the
    reference does not state is marked GUESS where it is made. `start()` serves it on a
    free port and returns the base URL; the `add_*` builders (World) shape what it holds.
    """

    def __init__(
        self,
        *,
        app_id: str = "100000000000001",
        app_secret: str = "fake-app-secret",
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        require_appsecret_proof: bool = True,
        max_page_size: int = 100,
    ) -> None:
        super().__init__(app_id=app_id, app_secret=app_secret, seed=seed, clock=clock)
        self.require_appsecret_proof, self.max_page_size = require_appsecret_proof, max_page_size
        self.faults = Faults(seed=seed)
        self.fault_rng = random.Random(f"faults:{seed}")
        self.webhook_url: str | None = None
        self.verify_token = "verify-me"
        self.limits = Usage(clock)
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        # Custom audiences and Conversions API datasets (audiences.py).
        self.audiences = Audiences(clock, self._new_id, self.lead_created)
        self._server: ThreadingHTTPServer | None = None
        self._webhooks: WebhookSender | None = None

    # ---------------------------------------------------------------- server
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        handler = type("Handler", (Handler,), {"graph": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-graph",
            daemon=True,
        ).start()
        self._webhooks = WebhookSender(self)
        self.base_url = f"http://{host}:{self._server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        if self._webhooks:
            self._webhooks.stop()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGraph:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- faults, limits
    def set_faults(self, **changes: Any) -> None:
        known = {f.name for f in fields(Faults)}
        with self.lock:
            for key, value in changes.items():
                if key not in known:
                    raise KeyError(key)
                setattr(self.faults, key, value)
            if "seed" in changes:
                self.fault_rng.seed(f"faults:{changes['seed']}")

    def empty_page(self) -> bool:
        """Whether this /leads page comes back empty yet with `next` (Faults.empty_page_rate)."""
        rate = self.faults.empty_page_rate
        return bool(rate) and self.fault_rng.random() < rate

    def throttle(
        self, scope_id: str, seconds: float, *, code: int = 80005, regain_minutes: int = 1
    ) -> None:
        """Throttle a Page or business id for `seconds`; `scope_id` "app" throttles the
        whole app (every token, every Page: pass code 4 or 17; X-App-Usage shows 100)."""
        with self.lock:
            self.limits.throttle(scope_id, seconds, code, regain_minutes)

    def set_budget(self, scope_id: str, calls_per_hour: int) -> None:
        """Calls per rolling hour of a Page or business ("app": of the whole app, shown
        in X-App-Usage, code 4 past it)."""
        with self.lock:
            self.limits.set_budget(scope_id, calls_per_hour)

    # ---------------------------------------------------------------- webhooks
    def subscribe_webhook(
        self, url: str, *, verify_token: str = "verify-me", verify: bool = False
    ) -> None:
        """App-level subscription (object page, field leadgen). verify=True does the GET
        handshake first, as Meta does when the callback URL is saved."""
        if verify and not self.verify_webhook_endpoint(url, verify_token):
            raise ValueError("callback URL did not echo hub.challenge")
        with self.lock:
            self.webhook_url, self.verify_token = url, verify_token

    def install_app(self, page_id: str, fields_: list[str] | None = None) -> None:
        with self.lock:
            self.installed[page_id] = list(fields_ or ["leadgen"])

    def _notify(
        self, page_id: str, lead_id: str, form_id: str, ad_id: str | None, created: int
    ) -> None:
        if not self.webhook_url or "leadgen" not in self.installed.get(page_id, []):
            return
        value: dict[str, Any] = {"leadgen_id": lead_id, "page_id": page_id, "form_id": form_id}
        if ad_id:  # GUESS: organic leads carry no ad_id/adgroup_id in the ping
            value.update(adgroup_id=ad_id, ad_id=ad_id)
        value["created_time"] = created
        if self._webhooks:
            self._webhooks.enqueue(page_id, value)

    def flush_webhooks(self, timeout: float = 10) -> None:
        if self._webhooks:
            self._webhooks.flush(timeout)

    def verify_webhook_endpoint(self, url: str, verify_token: str) -> bool:
        challenge = str(self._rng.randrange(10**9, 2 * 10**9))
        try:
            resp = requests.get(
                url,
                timeout=5,
                params={
                    "hub.mode": "subscribe",
                    "hub.challenge": challenge,
                    "hub.verify_token": verify_token,
                },
            )
        except requests.RequestException:
            return False
        return resp.status_code == 200 and resp.text.strip() == challenge

    # ---------------------------------------------------------------- accounting
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": {f"{m} {k}": n for (m, k), n in sorted(self.calls.items())},
                "total_calls": self.total_calls(),
                "webhooks": dict(self._webhooks.stats) if self._webhooks else {},
                "leads": len(self.leads),
            }

    def handle_graph(
        self, method: str, parts: list[str], params: dict[str, str], self_url: str
    ) -> tuple[int, dict[str, str], bytes]:
        headers: dict[str, str] = {}
        kind = "unknown"
        try:
            with self.lock:
                target_id = parts[0] if parts else ""
                obj = self.objects.get(target_id)
                if obj is None and target_id in self.lead_meta:
                    obj = {"kind": "lead", **self.lead_meta[target_id]}
                kind = parts[1] if len(parts) > 1 else (obj["kind"] if obj else "unknown")
                self.calls[(method, kind)] += 1
                token = auth(self, params)
                if target_id == "me" and token.kind == "page":
                    parts = [token.scope_id, *parts[1:]]
                    obj = self.objects[token.scope_id]
                visible = obj is not None and self.visible(token, obj)
                scopes = self.scopes(obj) if visible else []
                headers, throttled = self.limits.count(scopes, self.total_calls())
                if throttled:
                    raise throttled
                if self.faults.error_rate and self.fault_rng.random() < self.faults.error_rate:
                    code = self.fault_rng.choice([1, 2])
                    raise GraphError(
                        code,
                        "An unknown error occurred"
                        if code == 1
                        else "An unexpected error has occurred. Please retry your request later.",
                        status=500,
                        transient=True,
                    )
                body = route(self, method, token, parts, params, self_url)
            status = 200
        except GraphError as err:
            status, body = err.status, json.dumps(err.body())
            headers = {**headers, **err.headers}
        except Exception as exc:  # a bug in the fake: answer like Graph's code 1, keep serving
            bug = GraphError(1, f"An unknown error occurred ({exc!r})", status=500, transient=True)
            status, body = bug.status, json.dumps(bug.body())
        if self.faults.latency:
            time.sleep(self.faults.latency)
        return status, headers, body.encode() if isinstance(body, str) else body
