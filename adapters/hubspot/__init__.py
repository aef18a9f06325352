"""HubSpot CRM: the contacts client (adapters/hubspot/client.py), v3 webhook signature
verification (signature.py), and `leadsync fake hubspot`, a local emulator of the API.

No jobs yet: pulling changes and pushing statuses need the change feed and the
two-way status engine (connector/sync/status.py), which are not built. A half-wired
job would write to the store without echo suppression or conflict rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

from adapters.hubspot.config import HubSpotConfig
from connector.ports import Job, Runtime


class HubSpotPlugin:
    name = "hubspot"
    config_key = "hubspot"
    config_model = HubSpotConfig

    def jobs(self, runtime: Runtime) -> Sequence[Job]:
        """None yet (see the module docstring): a configured section does nothing."""
        return []

    def register_cli(self, groups: dict[str, typer.Typer]) -> None:
        groups["fake"].command("hubspot")(fake_hubspot)


def fake_hubspot(
    port: int = typer.Option(8789, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    contacts: int = typer.Option(20, help="Contacts to create."),
    webhook_url: str | None = typer.Option(
        None, help="Send signed contact.propertyChange webhooks here."
    ),
    secret: str = typer.Option("fake-client-secret", help="The app client secret (signs)."),
    token: str = typer.Option("pat-na1-fake-0000", help="The private-app token accepted."),
) -> None:
    """Run the local HubSpot CRM emulator (contacts search, batch upsert/update/read,
    limits, signed webhooks), to try the sync without touching a real account."""
    from adapters.hubspot.fake import serve

    serve(port, host=host, contacts=contacts, webhook_url=webhook_url, secret=secret, token=token)


plugin: Any = HubSpotPlugin()

__all__ = ["HubSpotConfig", "HubSpotPlugin", "plugin"]
