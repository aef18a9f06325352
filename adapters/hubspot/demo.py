"""The HubSpot part of `leadsync demo`: the emulator in-process with a dozen contacts,
its webhooks pointed at the demo's daemon, and two status changes during the run:

- at ~4 s a sales rep "in HubSpot" marks a contact CONNECTED: the signed webhook comes
  in, the engine accepts it, the store shows Qualified;
- at ~8 s someone runs `leadsync contacts set-status` on another HubSpot contact: the
  engine fans it out, the outbox pushes it, HubSpot shows the new value.

The summary says whether each arrived (read back from the store and the emulator).
"""

from __future__ import annotations

import time
from typing import Any

from adapters.hubspot.fake import FakeHubSpot
from connector.sdk import Store

SECRET = "demo-hubspot-secret"
TOKEN = "pat-na1-demo-0000"
_PEOPLE = [
    ("Aminah", "Rahman", "aminah.rahman@example.my"),
    ("Budi", "Santoso", "budi.santoso@example.id"),
    ("Chloé", "Martin", "chloe.martin@example.fr"),
    ("Dmitri", "Volkov", "dmitri.volkov@example.com"),
    ("Elif", "Yılmaz", "elif.yilmaz@example.com.tr"),
    ("Femi", "Adeyemi", "femi.adeyemi@example.ng"),
    ("Grace", "Lee", "grace.lee@example.sg"),
    ("Hiro", "Tanaka", "hiro.tanaka@example.jp"),
    ("Isabel", "Costa", "isabel.costa@example.pt"),
    ("Jonas", "Berg", "jonas.berg@example.se"),
    ("Kavya", "Nair", "kavya.nair@example.in"),
    ("Liam", "O'Brien", "liam.obrien@example.ie"),
]
IN_HUBSPOT = ("CONNECTED", "Qualified")  # the rep's value, and what the store should show
IN_CLI = ("Negotiating", "OPEN_DEAL")  # the CLI's status, and what HubSpot should show


class HubSpotDemo:
    """Owns the emulator for the demo's lifetime."""

    title = "HubSpot CRM (local emulator, two-way status sync)"

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self.fake = FakeHubSpot(token=TOKEN, client_secret=SECRET)
        now = int(time.time() * 1000)
        self.ids = [
            self.fake.add_contact(
                email, at=now - (len(_PEOPLE) - i) * 60_000, firstname=first, lastname=last
            ).id
            for i, (first, last, email) in enumerate(_PEOPLE)
        ]
        for cid in self.ids:
            self.fake.change(cid, "hs_lead_status", "NEW", source="IMPORT")
        self.fake.start()
        self.changed_in_hubspot: int | None = None
        self.set_in_cli: int | None = None
        self.cli_error: str | None = None

    def section(self) -> tuple[str, dict[str, Any]]:
        return "hubspot", {
            "token": TOKEN,
            "portal_id": self.fake.portal.portal_id,
            "api_url": self.fake.base_url,
            "webhook_secret": SECRET,
            "poll_every": 5,
            "lag": 5,
        }

    def start(self, server_url: str) -> None:
        self.fake.set_webhooks(url=server_url + "/webhooks/hubspot", properties=["hs_lead_status"])

    def tick(self, elapsed: float) -> None:
        if self.changed_in_hubspot is None and elapsed >= 4:
            self.changed_in_hubspot = self.ids[0]
            self.fake.change(self.ids[0], "hs_lead_status", IN_HUBSPOT[0])
        if self.set_in_cli is None and elapsed >= 8 and self.store is not None:
            contact = self._contact_of(str(self.ids[1]))
            if contact is None:
                return  # not pulled yet: try again at the next tick
            self.set_in_cli = contact
            try:
                from connector.sdk import set_by_person

                set_by_person(self.store, contact, IN_CLI[0], "demo (leadsync contacts set-status)")
            except Exception as exc:  # the demo reports it instead of dying
                self.cli_error = f"{type(exc).__name__}: {exc}"

    def _contact_of(self, hubspot_id: str) -> int | None:
        assert self.store is not None
        from connector.sdk import links

        with self.store.reader.connect() as conn:
            return links.find(conn, "hubspot", hubspot_id)

    def summary(self) -> list[str]:
        state = self.fake.state()
        lines = [
            f"HubSpot calls answered by the emulator: {sum(state['calls'].values())} "
            f"({', '.join(f'{v} {k}' for k, v in sorted(state['calls'].items()))}); "
            f"webhooks: {state['webhooks'].get('delivered', 0)} delivered"
        ]
        if self.store is not None and self.changed_in_hubspot is not None:
            contact = self._contact_of(str(self.changed_in_hubspot))
            got = self._status(contact) if contact is not None else None
            ok = "reached the store" if got == IN_HUBSPOT[1] else "did NOT reach the store"
            lines.append(
                f"set in HubSpot: contact {self.changed_in_hubspot} -> {IN_HUBSPOT[0]}: {ok} "
                f"(store: {got or 'no contact'})"
            )
        if self.set_in_cli is not None:
            value = self.fake.portal.contacts[self.ids[1]].properties.get("hs_lead_status")
            ok = "reached HubSpot" if value == IN_CLI[1] else "did NOT reach HubSpot (yet)"
            lines.append(
                f"set in the CLI: contact {self.set_in_cli} -> {IN_CLI[0]}: {ok} "
                f"(HubSpot: {value})" + (f"; error: {self.cli_error}" if self.cli_error else "")
            )
        return lines

    def _status(self, contact_id: int) -> str | None:
        assert self.store is not None
        from connector.sdk import contact_store as contacts

        return str(contacts.show_contact(self.store, contact_id)["status_name"])

    def stop(self) -> None:
        self.fake.stop()
