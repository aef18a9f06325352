from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import ConfigError, load_config

EXAMPLE = Path(__file__).parents[2] / "config" / "leadsync.example.yaml"


@pytest.fixture(autouse=True)
def _example_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # The example keeps its secrets in the environment, as a deployment should.
    for name in ("FACEBOOK_APP_SECRET", "FACEBOOK_SYSTEM_USER_TOKEN", "FACEBOOK_VERIFY_TOKEN"):
        monkeypatch.setenv(name, "x")


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE)
    cat = config.catalogue()
    assert config.facebook.pages[0].forms == "all"  # type: ignore[attr-defined]
    assert cat.resolve("Trial").id == 33
    assert cat.get(10).name == "Fresh lead"


def test_errors_name_file_line_and_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "store:\n  url: sqlite:///x.db\nstatuses:\n  custom:\n    - {id: 30, name: Dup, rank: 1}\n"
        "default_region: malaysia\nunknown_key: 1\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert f"{path}:5: statuses.custom.0.id" in text and "canonical" in text
    assert f"{path}:6: default_region" in text
    assert f"{path}:7: unknown_key" in text


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("store:\n  url: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: not valid YAML"):
        load_config(path)


def test_environment_overrides_store_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSYNC_STORE_URL", "sqlite:///env.db")
    assert load_config(EXAMPLE).store.url == "sqlite:///env.db"


def test_env_references_are_expanded_and_missing_ones_named(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from connector.config import ConfigError, LeadsyncConfig, validate_file

    path = tmp_path / "c.yaml"
    path.write_text("store:\n  url: ${LS_TEST_URL}\ndefault_region: MY\n")
    monkeypatch.setenv("LS_TEST_URL", "sqlite:///x.db")
    assert validate_file(path, LeadsyncConfig).store.url == "sqlite:///x.db"
    monkeypatch.delenv("LS_TEST_URL")
    with pytest.raises(ConfigError) as caught:
        validate_file(path, LeadsyncConfig)
    assert f"{path}:2: store.url: environment variable LS_TEST_URL is not set" in str(caught.value)
