"""HubSpot CRM, the first two-way system: the `hubspot.pull` and `hubspot.webhooks`
jobs (HubSpot's contacts and status changes into the store, through the two-way
engine), the `contact.propertyChange` webhook route, the "hubspot" outbox destination
(new contacts and accepted status changes out to HubSpot), its part of `leadsync
demo`, and `leadsync fake hubspot`, a local emulator of the API.

Modules: client (the API, on connector/http.py), signature (v3), events (webhook
bodies), contacts (a HubSpot contact as a lead), source (the contacts search as a
LeadSource), pull, webhook, drain, push, demo, contract (the contract suite's cases);
fake* (the emulator).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer
from starlette.routing import BaseRoute

from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.config import HubSpotConfig
from connector.sdk import Destination, Job, Lead, Runtime, Store


def section(config: Any) -> HubSpotConfig | None:
    found = getattr(config, "hubspot", None)
    return found if isinstance(found, HubSpotConfig) else None


class HubSpotPlugin:
    name = "hubspot"
    config_key = "hubspot"
    config_model = HubSpotConfig
    demo_order = 30

    def __init__(self) -> None:
        self._clients: dict[int, HubSpotClient] = {}
        self._demo_store: Store | None = None

    def client(self, runtime: Runtime, config: HubSpotConfig) -> HubSpotClient:
        """One client per runtime and config: its scopes (search pace, pauses, the
        daily count) are the account's, shared by the pull, the drain and the push."""
        key = id(config)
        if key not in self._clients:
            self._clients[key] = HubSpotClient(config, stopping=runtime.stopping)
        return self._clients[key]

    def status_systems(self, config: Any) -> list[str]:
        """["hubspot"] when the section is configured: the engine fans out to it."""
        return ["hubspot"] if section(config) is not None else []

    def jobs(self, runtime: Runtime) -> Sequence[Job]:
        config = section(runtime.config)
        if config is None:
            return []
        from adapters.hubspot.drain import drain
        from adapters.hubspot.pull import PULL_JOB, pull
        from adapters.hubspot.webhook import DRAIN_JOB
        from connector.sdk import OUTBOX_JOB, Pipeline

        region = getattr(runtime.config, "default_region", None)

        def run_pull(rt: Runtime) -> dict[str, int]:
            client = self.client(rt, config)
            return pull(
                rt.store,
                client,
                config,
                default_region=region,
                stopping=rt.stopping.is_set,
                wake=lambda: rt.wake(OUTBOX_JOB),
            )

        def run_drain(rt: Runtime) -> dict[str, int]:
            def pipeline() -> Pipeline:
                return Pipeline(rt.store, default_region=region, workers=0)

            return drain(rt, self.client(rt, config), config, pipeline)

        jobs = [Job(PULL_JOB, run_pull, every=config.poll_every, jitter=config.poll_every / 10)]
        if config.webhook_secret is not None:
            # Deliveries wake this job at once; the interval only sweeps up leftovers.
            jobs.append(Job(DRAIN_JOB, run_drain, every=30.0))
        return jobs

    def routes(self, runtime: Runtime) -> Sequence[BaseRoute]:
        from adapters.hubspot.webhook import routes

        config = section(runtime.config)
        return routes(runtime, config) if config is not None else []

    def destinations(self, runtime: Runtime) -> Sequence[Destination]:
        config = section(runtime.config)
        if config is None:
            return []
        from adapters.hubspot.push import HubSpotDestination

        return [HubSpotDestination(runtime.store, self.client(runtime, config), config)]

    def demo(self, store: Store, workdir: Path, console: Any) -> None:
        """`leadsync demo`'s first step: nothing to import, but the live part needs the
        demo's store to set a status "in the CLI" (LiveDemo has no store of its own)."""
        self._demo_store = store
        # The demo's daemon connects the fan-out for this store (runtime/demo.py), so a
        # status set in the CLI reaches HubSpot.
        console.print("[bold]HubSpot[/]: an emulated portal with 12 contacts joins the run")

    def demo_live(self) -> Any:
        """A HubSpot emulator with contacts, for `leadsync demo`."""
        from adapters.hubspot.demo import HubSpotDemo

        return HubSpotDemo(self._demo_store)

    def remap(self, raw: Mapping[str, Any], context: Mapping[str, Any], ref: str) -> Lead:
        """A quarantined HubSpot contact (its properties are the raw record) again."""
        from adapters.hubspot.client import HubSpotContact, to_ms
        from adapters.hubspot.contacts import to_lead

        props = {str(k): (None if v is None else str(v)) for k, v in raw.items()}
        modified = props.get("lastmodifieddate") or "0"
        contact_id = str(props.get("hs_object_id") or context.get("hubspot_id") or ref)
        return to_lead(HubSpotContact(contact_id, to_ms(modified), props))

    def contract_source(self, workdir: Path) -> Any:
        """The contract suite's lead-source case: the emulator's contacts search
        (adapters/hubspot/contract.py)."""
        from adapters.hubspot.contract import HubSpotCase

        return HubSpotCase()

    def contract_status(self, workdir: Path) -> Any:
        """The contract suite's two-way case: the push and the pull against the
        emulator (adapters/hubspot/contract.py)."""
        from adapters.hubspot.contract import HubSpotStatusCase

        return HubSpotStatusCase()

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
