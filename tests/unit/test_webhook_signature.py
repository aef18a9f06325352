"""A webhook whose signature header holds non-ASCII characters is a forgery (403)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from adapters.facebook.webhook import signature, verified
from connector.runtime.daemon import Daemon
from connector.runtime.server import build_app
from connector.store import Store

BODY = b'{"object": "page", "entry": []}'


@pytest.mark.parametrize("header", ["sha256=é", "sha256=\u0142\u00f3d\u017a", "ż" * 71])
def test_non_ascii_signatures_are_not_verified(header: str) -> None:
    assert verified("s3cret", BODY, header) is False
    assert verified("s3cret", BODY, signature("s3cret", BODY)) is True


def test_the_route_answers_403_not_500(store: Store, tmp_path: Path) -> None:
    from adapters.facebook import plugin as facebook
    from connector.config import load_config

    path = tmp_path / "leadsync.yaml"
    path.write_text(
        "facebook:\n  app_secret: s3cret\n  verify_token: t\n  system_user_token: a\n"
        "  graph_url: http://127.0.0.1:9\n  webhook_path: /webhooks/facebook\n"
        '  pages: [{id: "123"}]\n'
    )
    d = Daemon(load_config(path), store, {"facebook": facebook}, config_path=path)
    http = TestClient(build_app(d, d.plugins))
    good = signature("s3cret", BODY)
    for raw in (good[:-1].encode() + "é".encode("latin-1"), "sha256=ąę".encode()):
        sent = http.post("/webhooks/facebook", content=BODY, headers={"X-Hub-Signature-256": raw})
        assert sent.status_code == 403
    assert (
        http.post(
            "/webhooks/facebook", content=BODY, headers={"X-Hub-Signature-256": good}
        ).status_code
        == 200
    )
