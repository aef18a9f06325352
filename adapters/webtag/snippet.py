"""The tag an admin pastes into every page: `leadsync webtag snippet --site SITE`.

A few bytes inline (a stub that queues calls, so the page can call `leadsync(...)`
before the script has loaded) and snippet.js loaded async: the page never waits for
it, and the stub is the only global (`window.leadsync`)."""

from __future__ import annotations

import json

from adapters.webtag.config import SiteConfig, WebtagConfig

_STUB = (
    "<script>\n"
    "(function(w,d,u,c){{w.leadsync=w.leadsync||function(){{"
    "(w.leadsync.q=w.leadsync.q||[]).push(arguments)}};w.leadsync.c=c;"
    "var s=d.createElement('script');s.async=true;s.src=u;"
    "(d.head||d.documentElement).appendChild(s)}})(window,document,{url},{settings});\n"
    "</script>"
)


def collector_url(config: WebtagConfig) -> str:
    """Where browsers post events."""
    return config.public_url.rstrip("/") + config.path


def script_url(config: WebtagConfig) -> str:
    """Where browsers load snippet.js from."""
    return config.script_url or collector_url(config).rstrip("/") + "/snippet.js"


def settings(config: WebtagConfig, site: SiteConfig) -> dict[str, object]:
    """What the tag tells snippet.js (all public: it is in the page's source)."""
    found: dict[str, object] = {"site": site.key, "collector": collector_url(config)}
    if site.consent_required:
        found["consent"] = True
    if site.capture_forms:
        found["forms"] = list(site.capture_forms)
    return found


def tag(config: WebtagConfig, site_name: str) -> str:
    """The exact HTML to paste into the site's pages (before `</head>`)."""
    site = next((s for s in config.sites if s.name == site_name), None)
    if site is None:
        names = ", ".join(s.name for s in config.sites)
        raise ValueError(f"no site {site_name!r} in webtag.sites (configured: {names})")

    # json.dumps gives JavaScript literals; `</` is escaped so no value can close the
    # script element early.
    def js(value: object) -> str:
        return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")

    return _STUB.format(url=js(script_url(config)), settings=js(settings(config, site)))
