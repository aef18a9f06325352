"""A local emulator of the Meta Graph API: Lead Ads, custom audiences, Conversions API.

Built from shared/reference/external-apis.md sections A–E, not from our client. Where a
behaviour is a guess rather than a documented fact the comment says GUESS. Control
routes under /_fake/... need no token (for the benchmark and `serve`).

Modules: `world` (what it holds and the builders), `nodes` (how Graph shows it),
`routes` (who may call what), `usage` (rate limits), `webhooks` (leadgen pings),
`audiences` (custom audiences and events), `faults`, `errors`, `handler` (HTTP),
`control` (/_fake), `server` (FakeGraph, the whole), `demo_world` (the demo's world).
"""

from adapters.facebook.fake.demo_world import (
    DEMO_QUESTIONS,
    build_demo_world,
    config_section,
    how_to,
    serve,
)
from adapters.facebook.fake.errors import GraphError
from adapters.facebook.fake.faults import Faults
from adapters.facebook.fake.server import FakeGraph
from adapters.facebook.fake.world import FakePage, Token

__all__ = [
    "DEMO_QUESTIONS",
    "FakeGraph",
    "FakePage",
    "Faults",
    "GraphError",
    "Token",
    "build_demo_world",
    "config_section",
    "how_to",
    "serve",
]
