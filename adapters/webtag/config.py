"""The `webtag:` section of leadsync.yaml: the sites that carry the tag and the
collector's limits."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_BOTS = (
    r"bot\b|bot/|crawl|spider|slurp|facebookexternalhit|preview|monitor|pingdom|"
    r"lighthouse|curl/|wget/|python-requests|httpclient|go-http-client|java/"
)


class SiteConfig(BaseModel):
    """One website that carries the tag."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="The site's name, stored with every visitor and page view (e.g. `www`).",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
    )
    key: str = Field(
        description="The site key the tag sends with every batch. Public (it is in the "
        "page's source): it says which site an event belongs to; the allowed origins "
        "are what stop other sites from using it.",
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
    )
    allowed_origins: list[str] = Field(
        min_length=1,
        description="Origins allowed to send events (`https://www.example.com`, no path). "
        "A request from any other origin is refused (403) and gets no CORS headers.",
    )
    consent_required: bool = Field(
        False,
        description="When true the tag sets no cookie and sends nothing until the page "
        "calls `leadsync('consent', true)` (your consent banner does).",
    )
    capture_forms: list[str] = Field(
        default_factory=list,
        description="CSS selectors of forms whose email/phone/name inputs are captured "
        "on submit as an identify (opt-in: empty captures nothing).",
    )
    region: str | None = Field(
        None, pattern="^[A-Z]{2}$", description="Country for phone numbers without a code."
    )


class WebtagConfig(BaseModel):
    """The web tag: a snippet on the company's site and the collector route it posts to."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field("webtag", description="Source name stored with every identify lead.")
    path: str = Field(
        "/collect", pattern=r"^/[A-Za-z0-9/_-]*$", description="The collector's path."
    )
    public_url: str = Field(
        "http://127.0.0.1:8080",
        description="The daemon's address as browsers reach it (scheme and host, no path); "
        "`leadsync webtag snippet` writes it into the tag.",
    )
    script_url: str | None = Field(
        None,
        description="Where the site serves snippet.js (default: the daemon serves it at "
        "`<public_url><path>/snippet.js`).",
    )
    sites: list[SiteConfig] = Field(min_length=1, description="The sites carrying the tag.")
    max_body: int = Field(
        65536, gt=0, le=1 << 20, description="Largest request body accepted (bytes); 413 above."
    )
    max_events: int = Field(50, gt=0, le=1000, description="Most events in one request.")
    rate_per_ip: float = Field(
        20.0, gt=0, description="Requests per second one client IP may send on average."
    )
    burst_per_ip: int = Field(
        60, gt=0, description="Requests one client IP may send at once above the rate."
    )
    client_ip_header: str | None = Field(
        None,
        description="Header holding the client's IP when the daemon is behind a proxy "
        "(`x-forwarded-for`: its first address). Unset: the connection's address.",
    )
    bot_pattern: str = Field(
        DEFAULT_BOTS,
        description="Regular expression (case-insensitive) on User-Agent: matching "
        "requests are answered 204 and dropped (counted in /metrics).",
    )
    anonymous_retention_days: float = Field(
        90,
        gt=0,
        description="Visitors who never identify are deleted (with their page views) "
        "this many days after they were last seen.",
    )
    identify_every: float = Field(
        30.0, gt=0, description="Seconds between sweeps of identify events left waiting."
    )

    def site_by_key(self) -> dict[str, SiteConfig]:
        """Sites by their key."""
        return {s.key: s for s in self.sites}
