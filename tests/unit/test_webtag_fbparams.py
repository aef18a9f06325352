"""The collector's fbc/fbp are exactly what Meta's own parameter builder
(`capi-param-builder-python`) gives for the same page, however the collector reuses
builders (one per host, kept between requests) and whatever it skips (a page with no
click id and no Meta cookie); and the snippet's `_fbc` cookie is what the builder
keeps as it is (same click: only its version appendix is added)."""

from __future__ import annotations

import itertools
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from capi_param_builder import ParamBuilder

from adapters.webtag.fbparams import click_ids

HOSTS = ["www.example.com", "example.com", "shop.eu.example.com", "127.0.0.1:8080"]
QUERIES = ["", "?utm_source=ads", "?fbclid=IwAR_Same-Case", "?fbclid=Other&utm_medium=cpc"]
FBC = [
    None,
    "fb.1.1764590000000.IwAR_Same-Case",  # as the snippet writes it
    "fb.1.1764590000000.IwAR_Same-Case.AQIBAQMC",  # with an appendix already
    "fb.2.1764590000000.OldClick",
    "not.a.cookie",
]
FBP = [None, "fb.1.1764590000000.1234567"]


def _fresh(url: str, fbc: str | None, fbp: str | None) -> tuple[str | None, str | None]:
    parts = urlsplit(url)
    cookies = {k: v for k, v in (("_fbc", fbc), ("_fbp", fbp)) if v}
    builder = ParamBuilder()
    builder.process_request(parts.netloc, parse_qs(parts.query), cookies, None)
    # The collector keeps an fbp only when the browser had one (the builder invents one).
    return builder.get_fbc(), builder.get_fbp() if fbp else None


def test_click_ids_equal_a_fresh_builder_for_every_host_url_and_cookie(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One clock for both, so a newly formed fbc carries the same creation time.
    monkeypatch.setattr(time, "time", lambda: 1796140000.123)
    # Hosts interleaved: a builder reused across hosts would keep the first host's
    # subdomain index (the builder works it out once), and these hosts differ in it.
    cases = list(itertools.product(QUERIES, FBC, FBP, HOSTS))
    indexes = {str(_fresh(f"https://{h}/?fbclid=A", None, None)[0]).split(".")[1] for h in HOSTS}
    assert len(indexes) > 1  # the hosts do differ in it
    for query, fbc, fbp, host in cases + cases[::-1]:
        url = f"https://{host}/page{query}"
        ids = click_ids(url, fbc, fbp)
        assert (ids.fbc, ids.fbp) == _fresh(url, fbc, fbp), (url, fbc, fbp)


def test_the_builder_keeps_the_snippets_cookie_for_the_same_click() -> None:
    snippet_cookie = f"fb.1.{int(time.time() * 1000)}.IwAR_Same-Case"
    ids = click_ids("https://www.example.com/?fbclid=IwAR_Same-Case", snippet_cookie, None)
    assert ids.fbc is not None and ids.fbc.startswith(snippet_cookie + ".")
    assert ids.fbc.count(".") == 4  # fb.<index>.<ms>.<click>.<appendix>
