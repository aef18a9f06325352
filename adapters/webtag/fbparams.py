"""Meta's click and browser ids (fbc, fbp) for a page view, formed by Meta's own
parameter builder (`capi-param-builder-python`), not by hand.

The snippet sets the `_fbc` cookie itself when a landing URL carries `fbclid`
(`fb.1.<ms>.<fbclid>`, as Meta's Pixel does: the collector is on another host and
cannot set first-party cookies) and reports both cookies with each page view. The
builder is given the page's host and query and those cookies: it keeps a cookie whose
click id matches the URL's, forms a new fbc (creation time in milliseconds) when the
URL brings a different click (a returning visitor from a new ad), and adds its
version appendix. An fbp is kept only when the browser had one: the builder would
invent one, but an fbp no browser carries matches nothing at Meta.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from capi_param_builder import ParamBuilder

UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")

# Builders kept per host, per thread. Making one costs more than using it (it encodes
# its three version appendices each time: ~80 us, a third of a collector request), and
# a builder works out its host's subdomain index on first use and never again, so one
# is reused only for the host it was made for. Per thread: process_request keeps its
# results on the builder until get_fbc reads them.
_MAX_HOSTS = 1024
_local = threading.local()


@dataclass(frozen=True, slots=True)
class ClickIds:
    """What a page view's URL and cookies say about where the visitor came from."""

    fbc: str | None
    fbp: str | None
    utm: dict[str, str] | None


def _builder(host: str) -> ParamBuilder:
    builders: dict[str, ParamBuilder] | None = getattr(_local, "builders", None)
    if builders is None:
        builders = _local.builders = {}
    found = builders.get(host)
    if found is None:
        if len(builders) >= _MAX_HOSTS:  # a flood of made-up hosts cannot grow it
            builders.clear()
        found = builders[host] = ParamBuilder()
    return found


def click_ids(url: str, fbc_cookie: str | None, fbp_cookie: str | None) -> ClickIds:
    """fbc and fbp (Meta's builder) and the UTM parameters of a page view."""
    parts = urlsplit(url)
    # parse_qs decodes the query once, as a server would; the click id's case is kept.
    queries = parse_qs(parts.query, keep_blank_values=False)
    utm = {name: queries[name][0][:200] for name in UTM_PARAMS if queries.get(name)}
    if not (fbc_cookie or fbp_cookie or "fbclid" in queries):
        # Nothing for the builder to keep or form: its fbc comes from the cookie or the
        # URL's fbclid (we give it no referrer), and an fbp it would invent we drop.
        return ClickIds(fbc=None, fbp=None, utm=utm or None)
    cookies = {name: value for name, value in (("_fbc", fbc_cookie), ("_fbp", fbp_cookie)) if value}
    builder = _builder(parts.netloc)
    builder.process_request(parts.netloc, queries, cookies, None)
    return ClickIds(
        fbc=builder.get_fbc(),
        fbp=builder.get_fbp() if fbp_cookie else None,
        utm=utm or None,
    )
