"""`config validate` runs the daemon's checks: what it accepts the daemon accepts, and
what the daemon refuses it refuses first, in the file's line order and in words."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import structlog
import yaml
from typer.testing import CliRunner

from connector.checks import mapping_schema
from connector.cli import app
from connector.config import ConfigError, json_schema, load_config
from connector.runtime.daemon import Daemon
from connector.store import open_store

ROOT = Path(__file__).parents[2]
SECRETS = ("FACEBOOK_APP_SECRET", "FACEBOOK_SYSTEM_USER_TOKEN", "FACEBOOK_VERIFY_TOKEN")


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.setenv(name, "x")


def validate(path: Path) -> tuple[int, str]:
    # The CLI points structlog at the runner's captured stderr, which closes after:
    # put the logging back as it was, for the tests that run after this one.
    saved = structlog.get_config()
    try:
        result = CliRunner().invoke(app, ["config", "validate", str(path)])
    finally:
        structlog.configure(**saved)
    text = result.output + (str(result.exception) if result.exception else "")
    return result.exit_code, text


def facebook(tmp_path: Path, extra: str = "", page: str = "") -> Path:
    path = tmp_path / "leadsync.yaml"
    path.write_text(
        "facebook:\n"
        "  app_secret: ${FACEBOOK_APP_SECRET}\n"
        f"  pages:\n    - id: '123'\n{page}" + extra,
        encoding="utf-8",
    )
    return path


def daemon_refuses(path: Path) -> str:
    memory = open_store("sqlite://", upgrade=True)
    try:
        with pytest.raises(ConfigError) as caught:
            Daemon(load_config(path), memory, config_path=path).jobs()
    finally:
        memory.close()
    return str(caught.value)


def test_a_schedule_for_a_job_that_does_not_exist_is_refused_by_both(tmp_path: Path) -> None:
    path = facebook(tmp_path, "schedules:\n  facebook.pol: {every: 60}\n")
    code, text = validate(path)
    assert code != 0
    assert f"{path}:6: schedules.facebook.pol: no job is called `facebook.pol`" in text
    assert "did you mean `facebook.poll`?" in text
    assert "did you mean `facebook.poll`?" in daemon_refuses(path)


def test_mapping_files_must_exist_validate_and_name_statuses(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns:\n  Status: {field: status, values: {Baru: Nw}}\n")
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("columns:\n  X: {feld: y}\n")
    page = f"      mapping: {tmp_path / 'missing.yaml'}\n      form_mappings: {{'9': {invalid}}}\n"
    path = facebook(tmp_path, f"  mapping: {bad}\n", page=page)
    code, text = validate(path)
    assert code != 0
    assert "missing.yaml does not exist" in text
    assert "no status is called `Nw`; did you mean `New`?" in text
    assert "unknown key `feld`; did you mean `field`?" in text
    # In the file's order: the page's mapping (line 5) before the section's (line 6).
    assert text.index("missing.yaml") < text.index("`Nw`")
    refused = daemon_refuses(path)
    assert "missing.yaml does not exist" in refused and "`Nw`" in refused


def test_a_mapping_file_alone_is_checked_for_status_words(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("columns:\n  Status: {field: status, values: {Menang: Wonn}}\n")
    code, text = validate(bad)
    assert code != 0 and "no status is called `Wonn`; did you mean `Won`?" in text


def test_errors_are_in_line_order_with_did_you_mean_and_patterns_in_words(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "server:\n  prot: 80\ndefault_region: malaysia\nsttuses: {}\n", encoding="utf-8"
    )
    code, text = validate(path)
    assert code != 0
    found = re.findall(rf"{re.escape(str(path))}:(\d+):", text)
    assert found == sorted(found, key=int) and len(found) == 3
    assert "unknown key `prot`; did you mean `port`?" in text
    assert "unknown key `sttuses`; did you mean `statuses`?" in text
    assert "two-letter country code" in text and "^[A-Z]" not in text


def test_a_missing_environment_variable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FACEBOOK_APP_SECRET")
    code, text = validate(facebook(tmp_path))
    assert code != 0 and "environment variable FACEBOOK_APP_SECRET is not set" in text


def test_the_example_config_and_mapping_pass(tmp_path: Path) -> None:
    for path in (ROOT / "config").rglob("*.yaml"):
        code, text = validate(path)
        assert code == 0, text


def _readme_yaml_blocks() -> list[object]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def test_every_yaml_in_config_and_the_readme_matches_the_json_schemas() -> None:
    config_schema, mapping = json_schema(), mapping_schema()
    documents = [yaml.safe_load(p.read_text()) for p in (ROOT / "config").rglob("*.yaml")]
    documents += _readme_yaml_blocks()
    assert len(documents) >= 4
    for document in documents:
        is_mapping = isinstance(document, dict) and "columns" in document
        jsonschema.validate(document, mapping if is_mapping else config_schema)


def test_the_mapping_schema_takes_the_shorthand_and_refuses_unknown_fields() -> None:
    schema = mapping_schema()
    jsonschema.validate({"columns": {"E-mail": "email"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"columns": {"E-mail": "emial"}}, schema)
