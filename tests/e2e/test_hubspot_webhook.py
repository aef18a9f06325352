"""The HubSpot webhook route over real loopback HTTP: the emulator's v3-signed
deliveries are stored, anything forged, stale or altered is refused and not stored."""

from __future__ import annotations

import time
from typing import Any

import requests
from starlette.applications import Starlette

from adapters.hubspot import HubSpotPlugin
from adapters.hubspot.config import HubSpotConfig
from adapters.hubspot.fake import FakeHubSpot
from adapters.hubspot.fake_webhooks import sign_v3
from connector.runtime import inbox
from connector.store import Store
from connector.store.tables import webhook_deliveries
from tests.e2e.test_facebook import StubRuntime, count, serving

SECRET = "s3cret-of-the-app"


def hs_config(fake: FakeHubSpot, **extra: Any) -> HubSpotConfig:
    return HubSpotConfig.model_validate(
        {
            "token": fake.token,
            "portal_id": fake.portal.portal_id,
            "api_url": fake.base_url,
            "webhook_secret": SECRET,
            **extra,
        }
    )


def signed(url: str, body: bytes, at_ms: int, secret: str = SECRET) -> dict[str, str]:
    ts = str(at_ms)
    return {
        "X-HubSpot-Request-Timestamp": ts,
        "X-HubSpot-Signature-v3": sign_v3(secret, "POST", url, body, ts),
        "Content-Type": "application/json",
    }


def test_signed_deliveries_are_stored_and_forgeries_are_not(store: Store) -> None:
    with FakeHubSpot(client_secret=SECRET) as fake:
        config = hs_config(fake)
        runtime = StubRuntime(store, type("Config", (), {"hubspot": config})())
        app = Starlette(routes=list(HubSpotPlugin().routes(runtime)))
        with serving(app) as base:
            url = base + config.webhook_path
            body = b'[{"objectId": 1}]'
            now = int(time.time() * 1000)
            refused = [
                requests.post(url, data=body),  # unsigned
                requests.post(url, data=body, headers=signed(url, body, now, "other")),
                requests.post(url, data=body + b" ", headers=signed(url, body, now)),
                requests.post(url + "?x=1", data=body, headers=signed(url, body, now)),
                # Older than five minutes: a replay, however well signed.
                requests.post(url, data=body, headers=signed(url, body, now - 301_000)),
                requests.post(
                    url,
                    data=body,
                    headers={**signed(url, body, now), "X-HubSpot-Signature-v3": "é"},
                ),
            ]
            assert [r.status_code for r in refused] == [401] * len(refused)
            assert count(store, webhook_deliveries) == 0 and runtime.woken == []

            ok = requests.post(url, data=body, headers=signed(url, body, now))
            assert ok.status_code == 204 and runtime.woken == ["hubspot.webhooks"]

            # The emulator's own deliveries (its signing is written from §G, not ours).
            fake.set_webhooks(url=url, properties=["hs_lead_status"])
            [cid] = fake.bulk_add(1, start_ms=now)
            fake.change(cid, "hs_lead_status", "CONNECTED")
            fake.change(cid, "firstname", "not subscribed")
            fake.flush_webhooks()
            assert fake.hooks.stats["delivered"] == 1
        assert inbox.pending(store, "hubspot") == 2


def test_behind_a_proxy_the_configured_public_url_is_what_is_verified(store: Store) -> None:
    with FakeHubSpot(client_secret=SECRET) as fake:
        public = "https://crm-sync.example.com/webhooks/hubspot"
        config = hs_config(fake, webhook_url=public)
        runtime = StubRuntime(store, type("Config", (), {"hubspot": config})())
        app = Starlette(routes=list(HubSpotPlugin().routes(runtime)))
        with serving(app) as base:
            url, body, now = base + config.webhook_path, b"[]", int(time.time() * 1000)
            as_received = requests.post(url, data=body, headers=signed(url, body, now))
            as_public = requests.post(url, data=body, headers=signed(public, body, now))
        assert (as_received.status_code, as_public.status_code) == (401, 204)


def test_no_client_secret_no_route(store: Store) -> None:
    with FakeHubSpot() as fake:
        config = hs_config(fake, webhook_secret=None)
        runtime = StubRuntime(store, type("Config", (), {"hubspot": config})())
        assert list(HubSpotPlugin().routes(runtime)) == []
