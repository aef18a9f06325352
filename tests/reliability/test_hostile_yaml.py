"""Hostile and careless YAML: every way a config or mapping file can be unusable is one
error naming the file (and line); nothing runs out of memory, recurses or dies, and a
running daemon keeps its old config."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import yamlload
from connector.config import ConfigError, LeadsyncConfig, load_config
from connector.mapping import load_mapping
from connector.runtime.daemon import Daemon
from connector.store import open_store
from tests.runtime.test_daemon_process import env, free_port, leadsync, wait_for

LAUGHS = "\n".join(
    [
        "a: &a [x, x, x, x, x, x, x, x, x, x]",
        *(
            f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "default_region: MY",
    ]
)
DEEP_LIST = "x: " + "[" * 50_000 + "]" * 50_000
DEEP_BLOCK = "".join(f"{' ' * i}k{i}:\n" for i in range(200)) + " " * 200 + "v: 1\n"

BROKEN: dict[str, tuple[bytes, str]] = {
    "billion laughs": (LAUGHS.encode(), "expands to more than"),
    "deep flow nesting": (DEEP_LIST.encode(), "nest"),  # libyaml stops at 1000
    "deep block nesting": (DEEP_BLOCK.encode(), "nested deeper than"),
    "non-UTF-8 byte": (b"default_region: MY\n# caf\xe9\n", ":2: not UTF-8 (byte 24 is 0xe9"),
    "duplicate key": (b"default_region: MY\nserver: {}\ndefault_region: PL\n", "lines 1 and 3"),
    "NUL byte": (b"default_region: M\x00Y\n", "not valid YAML"),
    "python tag": (b"x: !!python/object/apply:os.system [echo]\n", "not valid YAML"),
    "unclosed flow": (b"server: {port: 1\n", "not valid YAML"),
    "two documents": (b"a: 1\n---\nb: 2\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_every_broken_config_is_one_error_naming_the_file(tmp_path: Path, case: str) -> None:
    raw, expected = BROKEN[case]
    path = tmp_path / "leadsync.yaml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path))
    assert expected in str(caught.value)


def test_an_oversized_file_is_refused_before_it_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(yamlload, "MAX_BYTES", 1024)
    path = tmp_path / "leadsync.yaml"
    path.write_text("default_region: MY\n" + "# padding\n" * 200)
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)


def test_column_names_yaml_would_read_as_booleans_or_numbers_stay_as_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "columns:\n  NO: phone\n  Yes: email\n  On: {custom: on_flag}\n  1: {custom: one}\n"
        "  Status:\n    field: status\n    values: {Y: Won, N: Lost}\n"
    )
    mapping = load_mapping(path)
    assert set(mapping.columns) == {"NO", "Yes", "On", "1", "Status"}
    assert mapping.columns["Status"].values == {"Y": "Won", "N": "Lost"}


def test_a_bom_and_merge_keys_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "leadsync.yaml"
    path.write_bytes(b"\xef\xbb\xbfdefault_region: MY\nserver: {port: 9000}\n")
    assert load_config(path).server.port == 9000
    data, _ = yamlload.loads(b"base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n", "m.yaml")
    assert data["c"] == {"x": 1, "y": 2}


def test_the_c_loader_is_used_where_pyyaml_has_it() -> None:
    assert yamlload.Loader is getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_reload_refuses_every_broken_file_and_keeps_the_old_config(
    tmp_path: Path, case: str
) -> None:
    path = tmp_path / "leadsync.yaml"
    path.write_text("default_region: MY\n")
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}", upgrade=True)
    try:
        daemon = Daemon(load_config(path), store, plugins={}, config_path=path)
        path.write_bytes(BROKEN[case][0])
        assert daemon.reload() is False
        assert isinstance(daemon.config, LeadsyncConfig)
        assert daemon.config.default_region == "MY"
    finally:
        store.close()


@pytest.mark.slow
def test_sighup_with_a_non_utf8_byte_or_deep_nesting_leaves_the_daemon_running(
    tmp_path: Path,
) -> None:
    config = tmp_path / "leadsync.yaml"
    config.write_text("default_region: MY\n")
    log = tmp_path / "daemon.log"
    store = f"sqlite:///{tmp_path / 'daemon.db'}"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [*leadsync(store, "--config", str(config), "run", "--port", str(free_port()))],
            env=env(tmp_path, "tick"),
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
    try:
        wait_for(lambda: (tmp_path / "tick").exists(), "first tick")
        for n, raw in enumerate((b"default_region: MY\n\xff\n", DEEP_LIST.encode()), start=1):
            config.write_bytes(raw)
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda n=n: log.read_text().count("config.reload_rejected") == n, "rejection")
            assert proc.poll() is None
        assert "Traceback" not in log.read_text()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- fuzzing -------------------------------------------------------------------------

_YAMLISH = st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#,? \n\t~01Ny\x00\ufeff")))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_YAMLISH.map(str.encode), st.binary(max_size=200)))
def test_the_loader_never_fails_but_with_a_yaml_error(raw: bytes) -> None:
    try:
        yamlload.loads(raw, "fuzz.yaml")
    except yamlload.YamlError as exc:
        assert str(exc).startswith("fuzz.yaml")


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_what_pyyaml_dumps_reads_back_with_string_keys(data: object) -> None:
    raw = yaml.safe_dump({"root": data}).encode()
    loaded, _ = yamlload.loads(raw, "round.yaml")
    assert loaded == {"root": data}


@pytest.mark.slow
def test_the_cli_refuses_a_billion_laughs_in_every_command_that_reads_yaml(
    tmp_path: Path,
) -> None:
    from tests.e2e.test_cli import SAMPLE, run

    laughs = tmp_path / "laughs.yaml"
    laughs.write_text(LAUGHS)
    store = f"sqlite:///{tmp_path / 's.db'}"
    commands = [
        ("config", "validate", str(laughs)),
        ("import", "csv", str(SAMPLE / "leads.csv"), "--mapping", str(laughs)),
        ("--config", str(laughs), "status"),
    ]
    for command in commands:
        proc = run(*command, store=store, ok=False)
        assert proc.returncode != 0, command
        assert "expands to more than" in proc.stderr + proc.stdout, command
        assert "Traceback" not in proc.stderr, command
