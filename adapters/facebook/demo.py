"""The Facebook part of `leadsync demo`: the Graph API emulator in-process, a Page with
forms and messy leads already waiting, and a few more leads arriving by webhook while
the daemon runs."""

from __future__ import annotations

import random
from typing import Any

from adapters.facebook.fake import FakeGraph, build_demo_world

# New arrivals during the demo: one is a person already known (written differently),
# one is broken (an email without @), the rest are new.
_ARRIVALS: list[dict[str, Any]] = [
    {
        "full_name": "Nurul Aisyah",
        "email": "nurul.aisyah@example.my",
        "phone_number": "012-777 1234",
    },
    {"full_name": "Trần Thu Hà", "email": "ha.tran@example.vn", "phone_number": "0903 123 456"},
    {"full_name": "NURUL AISYAH", "email": " Nurul.Aisyah@Example.MY ", "city": "Ipoh"},
    {"full_name": "Zofia Wiśniewska", "email": "zofia.w@", "phone_number": "600 700 800"},
    {
        "full_name": "Emily Davis",
        "email": "emily.davis@example.com",
        "phone_number": "(650) 555-1212",
    },
    {
        "full_name": "Paweł Kamiński",
        "email": "pawel.k@example.pl",
        "phone_number": "+48 601 234 567",
    },
]


DEMO_DATASET = "555000777"


class FacebookDemo:
    """Owns the emulator for the demo's lifetime."""

    title = "Facebook Lead Ads (local Graph API emulator)"

    def __init__(self, seed: int = 7) -> None:
        self.fake = FakeGraph(seed=seed)
        self.fake.start()
        self.world = build_demo_world(self.fake, pages=1, forms=2, leads=30, seed=seed)
        self.rng = random.Random(seed)
        self.sent = 0
        # Audiences and Conversion Leads: a System User token of the Page's business, an
        # ad account for the audiences, a dataset the lead stages are sent to.
        page_id = self.world["pages"][0]["id"]
        self.token = self.fake.add_system_user_token(self.fake.objects[page_id]["business_id"])
        self.account = self.fake.audiences.add_account("100200300")
        self.dataset = self.fake.audiences.add_dataset(DEMO_DATASET)

    def section(self) -> tuple[str, dict[str, Any]]:
        """The config section the demo's daemon runs with."""
        page = self.world["pages"][0]
        return "facebook", {
            "app_id": self.fake.app_id,
            "app_secret": self.fake.app_secret,
            "graph_url": self.fake.base_url,
            "verify_token": "demo-verify-token",
            "pages": [{"id": page["id"], "access_token": page["token"]}],
            "region": "MY",
            "poll_every": 15,
            "lag": 60,
            "system_user_token": self.token,
            "conversions": {
                "dataset_id": DEMO_DATASET,
                "stages": {"Qualified": "Marketing Qualified Lead", "Won": "Converted"},
            },
            "audiences": {
                "ad_account_id": self.account,
                "push_every": 10,
                "sets": [
                    {
                        "name": "Qualified and won (seed)",
                        "where": "status in (Qualified, Won)",
                        "lookalike": {"countries": ["MY"], "ratio": 0.01},
                    },
                    {
                        "name": "Disqualified (exclusion)",
                        "where": "status = Disqualified",
                        "exclusion": True,
                    },
                    {"name": "Lost (remarketing)", "where": "status = Lost"},
                ],
            },
        }

    def start(self, server_url: str) -> None:
        """Point the emulator's webhooks at the daemon, after Meta's GET handshake."""
        self.fake.subscribe_webhook(
            server_url + "/webhooks/facebook", verify_token="demo-verify-token", verify=True
        )

    def tick(self, elapsed: float) -> None:
        """Every few seconds a person fills in a form: the webhook brings them in."""
        if self.sent < len(_ARRIVALS) and elapsed >= 2 + self.sent * 3:
            form = self.world["forms"][self.sent % len(self.world["forms"])]["id"]
            answers = {k: v for k, v in _ARRIVALS[self.sent].items()}
            self.fake.add_lead(form, answers, notify=True)
            self.sent += 1

    def summary(self) -> list[str]:
        stats = self.fake.stats()
        hooks = stats.get("webhooks", {})
        return [
            f"Graph API calls answered by the emulator: {stats['total_calls']}",
            f"leads on the emulator: {stats['leads']}; sent by webhook during the demo: "
            f"{self.sent} (deliveries: "
            + (", ".join(f"{v} {k}" for k, v in hooks.items()) or "none")
            + ")",
            f"Conversion Leads events received by the emulator's dataset: "
            f"{len(self.dataset.events)} in {self.dataset.requests} request(s) (leads "
            "older than 7 days are dead letters instead: leadsync outbox list)",
            *self.audience_lines(),
        ]

    def audience_lines(self) -> list[str]:
        found = [
            f"{a.name}: {len(a.members)} members"
            for a in self.fake.audiences.audiences.values()
            if a.subtype == "CUSTOM"
        ]
        calls = self.fake.audiences.calls
        return [
            "custom audiences on the emulator: "
            + ("; ".join(found) or "none yet")
            + f" (member uploads {calls.get('POST users', 0)}, removals "
            f"{calls.get('DELETE users', 0)})"
        ]

    def stop(self) -> None:
        self.fake.stop()
