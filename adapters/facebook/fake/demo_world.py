"""A small demo world (Pages, forms, ads, 30 days of messy leads), the config that reads
it, and `leadsync fake facebook`'s server."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from adapters.facebook.fake import data as fake_data
from adapters.facebook.fake.server import FakeGraph
from connector.sdk import serve_until_interrupted

DEMO_QUESTIONS: list[dict[str, Any]] = [
    {"key": "full_name", "label": "Full name", "type": "FULL_NAME"},
    {"key": "email", "label": "Email", "type": "EMAIL"},
    {"key": "phone_number", "label": "Phone number", "type": "PHONE"},
    {"key": "city", "label": "City", "type": "CITY"},
    {"key": "country", "label": "Country", "type": "COUNTRY"},
    {
        "key": "budget",
        "label": "Budget?",
        "type": "CUSTOM",
        "options": [
            {"key": f"opt{i}", "value": v}
            for i, v in enumerate(fake_data.CUSTOM_QUESTIONS["budget"])
        ],
    },
]


def build_demo_world(
    fake: FakeGraph, *, pages: int = 1, forms: int = 2, leads: int = 50, seed: int = 0
) -> dict[str, Any]:
    """Pages with forms, one campaign/ad set/ad per form, and `leads` leads per form spread
    over the last 30 days. Returns fake.world()."""
    now = fake.clock()
    interests = [
        [{"id": "6003107902433", "name": "Real estate"}],
        [{"id": "6003020834693", "name": "Personal finance"}],
    ]
    for p in range(pages):
        page = fake.add_page(f"Demo Page {p + 1}", business_id=f"9{seed:03d}{p:011d}")
        fake.install_app(page.id)
        campaign = fake.add_campaign(page.id, f"Leads {p + 1}")
        for f in range(forms):
            form_id = fake.add_form(
                page.id, f"Form {p + 1}.{f + 1}", questions=copy.deepcopy(DEMO_QUESTIONS)
            )
            adset = fake.add_adset(campaign, f"Ad set {f + 1}", interests=interests[f % 2])
            fake.add_ad(adset, f"Ad {f + 1}", form_id=form_id)
            fake.generate_leads(form_id, leads, start=now - 30 * 86400, end=now)
    return fake.world()


def config_section(fake: FakeGraph, world: dict[str, Any]) -> dict[str, Any]:
    """The `facebook:` config section that reads this emulator's world."""
    return {
        "facebook": {
            "graph_url": fake.base_url,
            "app_id": fake.app_id,
            "app_secret": fake.app_secret,
            "verify_token": fake.verify_token,
            "pages": [{"id": p["id"], "access_token": p["token"]} for p in world["pages"]],
        }
    }


def how_to(base_url: str, world: dict[str, Any], webhook_url: str | None) -> str:
    """What to do next with a running emulator: make a lead, have it sent by webhook."""
    form = world["forms"][0]["id"] if world["forms"] else "FORM_ID"
    page = world["pages"][0]["id"] if world["pages"] else "PAGE_ID"
    lead = json.dumps({"form_id": form, "field_data": {"email": "ana@example.com",
                                                       "full_name": "Ana Nowak"}})  # fmt: skip
    hook = webhook_url or "http://127.0.0.1:8787/webhooks/facebook"
    subscribe = json.dumps({"url": hook, "install": [page]})
    steps = [
        "# Make a lead (the next poll reads it; a subscribed webhook announces it):",
        f"curl -s -X POST {base_url}/_fake/lead -H 'Content-Type: application/json' \\",
        f"  -d '{lead}'",
    ]
    if webhook_url:
        steps.append(f"# Webhooks go to {webhook_url} for every new lead.")
    else:
        steps += [
            "# Send webhooks to a running `leadsync run` (its verify_token: verify-me):",
            f"curl -s -X POST {base_url}/_fake/subscribe -H 'Content-Type: application/json' \\",
            f"  -d '{subscribe}'",
        ]
    return "\n".join(steps)


def serve(
    port: int,
    host: str = "127.0.0.1",
    pages: int = 1,
    forms: int = 2,
    leads: int = 50,
    webhook_url: str | None = None,
    latency: float = 0.0,
    seed: int = 0,
) -> None:
    fake = FakeGraph(seed=seed)
    fake.start(host, port)
    world = build_demo_world(fake, pages=pages, forms=forms, leads=leads, seed=seed)
    fake.set_faults(latency=latency)
    if webhook_url:
        fake.subscribe_webhook(webhook_url)
    print(f"Fake Graph API at {fake.base_url}  (control: {fake.base_url}/_fake/world)")
    print(f"app_id: {fake.app_id}\napp_secret: {fake.app_secret}")
    for page in world["pages"]:
        print(f"page {page['id']} ({page['name']}) token: {page['token']}")
    for form in world["forms"]:
        print(
            f"form {form['id']} ({form['name']}) on page {form['page_id']}: "
            f"{form['leads_count']} leads"
        )
    print("\n# Paste into leadsync.yaml (validated by leadsync config validate):")
    print(yaml.safe_dump(config_section(fake, world), sort_keys=False), flush=True)
    print(how_to(fake.base_url, world, webhook_url), flush=True)
    serve_until_interrupted(fake.stop)
