"""The web tag's part of `leadsync demo`: a visitor of a demo shop, simulated by the HTTP
posts its snippet would make (no browser), lands from an ad, browses two pages, then
signs up, and the daemon turns the anonymous visitor into a contact with its visits."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import orjson
import requests

ORIGIN = "https://shop.example.com"
KEY = "demo-shop-key"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"
FBCLID = "IwAR2DemoClick_xYz"

# (seconds into the demo, page, identify traits or None)
_STEPS: list[tuple[float, str, dict[str, str] | None]] = [
    (1.0, "/?utm_source=facebook&utm_medium=paid&utm_campaign=winter&fbclid=" + FBCLID, None),
    (2.5, "/products/tea-set", None),
    (4.0, "/signup", None),
    (5.0, "/signup", {"email": "mei.lin@example.sg", "name": "Mei Lin", "phone": "+65 8123 4567"}),
]


class WebtagDemo:
    """Posts to the daemon's collector as a visitor's browser would."""

    title = "Web tag (a simulated visitor of the demo shop)"

    def __init__(self) -> None:
        self.url: str | None = None
        self.visitor = "demo-" + secrets.token_hex(8)
        self.fbc = f"fb.1.{int(time.time() * 1000)}.{FBCLID}"
        self.done = 0
        self.answers: list[int] = []
        self.became: str = "not yet a contact"

    def section(self) -> tuple[str, dict[str, Any]]:
        return "webtag", {
            "sites": [{"name": "shop", "key": KEY, "allowed_origins": [ORIGIN], "region": "SG"}],
            "identify_every": 5,
        }

    def start(self, server_url: str) -> None:
        self.url = server_url
        self.http = requests.Session()

    def _post(self, events: list[dict[str, Any]]) -> None:
        assert self.url is not None
        body = orjson.dumps({"site": KEY, "visitor": self.visitor, "events": events})
        headers = {"origin": ORIGIN, "user-agent": UA, "content-type": "text/plain"}
        answer = self.http.post(self.url + "/collect", data=body, headers=headers, timeout=10)
        self.answers.append(answer.status_code)

    def tick(self, elapsed: float) -> None:
        if self.done == len(_STEPS) and self.became != "a contact":
            self._check()
        while self.done < len(_STEPS) and elapsed >= _STEPS[self.done][0]:
            _, path, traits = _STEPS[self.done]
            event: dict[str, Any] = {
                "id": secrets.token_hex(12),
                "at": int(time.time() * 1000),
                "url": ORIGIN + path,
            }
            if traits is None:
                event.update(type="page_view", fbc=self.fbc, title=path)
            else:
                event.update(type="identify", traits=traits)
            self._post([event])
            self.done += 1

    def _check(self) -> None:
        """Whether the daemon has ingested the sign-up (its /metrics say; the demo sees
        the daemon only over HTTP, as an operator would)."""
        assert self.url is not None
        try:
            metrics = self.http.get(self.url + "/metrics", timeout=5).text
        except requests.RequestException:
            return
        found = re.search(r'leadsync_leads_ingested_total\{source="webtag"\} (\S+)', metrics)
        if found and float(found.group(1)) >= 1:
            self.became = "a contact"

    def summary(self) -> list[str]:
        became = self.became
        views = sum(1 for _, _, traits in _STEPS[: self.done] if traits is None)
        ok = sum(1 for code in self.answers if code == 200)
        return [
            f"web tag: visitor {self.visitor} came from a Facebook ad (utm_source=facebook, "
            f"fbclid), viewed {views} pages, signed up: {became} "
            f"({ok}/{len(self.answers)} collector posts accepted)"
        ]

    def stop(self) -> None:
        if self.url is not None:
            self.http.close()
