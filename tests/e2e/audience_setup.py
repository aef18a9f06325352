"""The setup the custom-audience end-to-end tests share (test_audiences.py and
test_audience_incremental.py): the Graph emulator over loopback, a `Pusher` on one of
its ad accounts, and `leadsync audiences ...` run through the real CLI against a config
file that points at the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from adapters.facebook import audiences as sync
from adapters.facebook.audience_config import AudiencesConfig
from adapters.facebook.fake import FakeGraph
from adapters.facebook.graph import GraphClient
from connector.store import Store

BUSINESS = "9001"  # the system user's business: its token may manage the account


def graph_fixture(seed: int) -> Callable[[], Iterator[FakeGraph]]:
    """A function-scoped `graph` fixture: a started emulator with this seed, stopped after
    the test (each module keeps its own seed, so its emulator's world is as before)."""

    @pytest.fixture
    def graph() -> Iterator[FakeGraph]:
        fake = FakeGraph(seed=seed)
        fake.start()
        yield fake
        fake.stop()

    return graph


def pusher(fake: FakeGraph, store: Store, sets: list[dict[str, Any]]) -> sync.Pusher:
    """A Pusher for `sets` on a new ad account (777) that a new system user token manages."""
    token = fake.add_system_user_token(BUSINESS)
    account = fake.audiences.add_account("777")
    config = AudiencesConfig.model_validate({"ad_account_id": account, "sets": sets})
    client = GraphClient(fake.base_url, "v26.0", retries=1, backoff=0.01)
    return sync.Pusher(store, sync.AdsGraph(client, token, fake.app_secret, account), config)


class AudienceCli:
    """`leadsync --config F --store URL ...` in process, where F configures a Page and
    `sets` on ad account 888 of the emulator (its token is `self.token`)."""

    def __init__(
        self, fake: FakeGraph, store: Store, tmp_path: Path, sets: list[dict[str, Any]]
    ) -> None:
        from connector.cli import GROUPS, _register_plugins, app

        if not GROUPS["audiences"].registered_commands:
            _register_plugins()
        self.app = app
        self.token = fake.add_system_user_token(BUSINESS)
        page = fake.add_page("Shop", business_id=BUSINESS)
        self.account = fake.audiences.add_account("888")
        config = {
            "facebook": {
                "app_secret": fake.app_secret,
                "system_user_token": self.token,
                "graph_url": fake.base_url,
                "pages": [{"id": page.id}],
                "audiences": {"ad_account_id": self.account, "sets": sets},
            }
        }
        self.path = tmp_path / "leadsync.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.url = str(store.engine.url.render_as_string(hide_password=False))

    def __call__(self, *args: str) -> str:
        """The command's output; it must exit 0."""
        result = CliRunner().invoke(
            self.app, ["--config", str(self.path), "--store", self.url, *args]
        )
        assert result.exit_code == 0, result.output
        return result.output

    def json(self, *args: str, logs_before: bool = False) -> Any:
        """The command's JSON: its whole output, or with `logs_before` its last line (a
        warning logged on the way may come before it)."""
        output = self(*args)
        return json.loads(output.strip().splitlines()[-1] if logs_before else output)
