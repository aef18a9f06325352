"""The web tag: snippet.js for the company's site, the collector route it posts to, the
job that turns identifies into contacts, the anonymous-visitor retention job, and
`leadsync webtag snippet`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import typer
from starlette.routing import BaseRoute

from adapters.webtag.collector import IDENTIFY_JOB, routes
from adapters.webtag.config import WebtagConfig
from adapters.webtag.identify import drain, lead_of, purge
from connector.sdk import Job, Lead, Runtime

RETENTION_JOB = "webtag.retention"


def section(config: Any) -> WebtagConfig | None:
    found = getattr(config, "webtag", None)
    return found if isinstance(found, WebtagConfig) else None


class WebtagPlugin:
    contract_exempt = (
        "a collector route the site posts to, not a source read from a cursor: its "
        "contract is tests/unit/test_webtag_collector.py and the browser test"
    )
    name = "webtag"
    config_key = "webtag"
    config_model = WebtagConfig
    demo_order = 30

    def jobs(self, runtime: Runtime) -> Sequence[Job]:
        config = section(runtime.config)
        if config is None:
            return []

        def identify(rt: Runtime) -> dict[str, int]:
            stats = drain(rt, config)
            return {"leads": stats.rows, "created": stats.created}

        def retention(rt: Runtime) -> dict[str, int]:
            return {"visitors_deleted": purge(rt, config)}

        return [
            # The collector wakes this job for each identify; the interval sweeps up.
            Job(IDENTIFY_JOB, identify, every=config.identify_every),
            Job(RETENTION_JOB, retention, every=3600.0, jitter=60.0),
        ]

    def routes(self, runtime: Runtime) -> Sequence[BaseRoute]:
        config = section(runtime.config)
        return routes(runtime, config) if config is not None else []

    def demo_live(self) -> Any:
        """A visitor browsing the demo site, then filling in its form."""
        from adapters.webtag.demo import WebtagDemo

        return WebtagDemo()

    def remap(self, raw: Mapping[str, Any], context: Mapping[str, Any], ref: str) -> Lead:
        """An identify from quarantine, read again (`quarantine retry`). The contact it
        makes is not linked to the visitor: that happens only in the identify job."""
        return lead_of(dict(raw), dict(context), {})

    def register_cli(self, groups: dict[str, typer.Typer]) -> None:
        if "webtag" in groups:
            groups["webtag"].command("snippet")(snippet_command)


def snippet_command(
    ctx: typer.Context,
    site: str = typer.Option(..., "--site", help="The site's name in webtag.sites."),
) -> None:
    """Print the tag to paste into every page of SITE (site key and collector URL in)."""
    from adapters.webtag.snippet import tag
    from connector.sdk import SourceError, state

    config = section(state(ctx).config())
    if config is None:
        raise SourceError("the config has no webtag section (see leadsync config schema)")
    typer.echo(tag(config, site))


plugin = WebtagPlugin()

__all__ = ["WebtagPlugin", "plugin"]
