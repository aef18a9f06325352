"""docker/ is read, never built here: check that what the Dockerfile and compose.yaml
reference (commands, options, ports, paths, environment variables) exists in the code."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from connector.cli import app
from connector.config import CONFIG_ENV, Environment, ServerConfig, load_config

ROOT = Path(__file__).parents[2]
DOCKER = ROOT / "docker"
PORT = ServerConfig().port


def known_env() -> set[str]:
    prefix = Environment.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Environment.model_fields} | {CONFIG_ENV}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (DOCKER / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def one(instruction: str) -> str:
    values = [rest for word, rest in dockerfile() if word == instruction]
    assert values, f"no {instruction} in the Dockerfile"
    return values[-1]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def check_cli(argv: list[str]) -> None:
    """`leadsync ARGV` names real commands and options (resolved like click does)."""
    group = typer.main.get_command(app)
    ctx = group.context_class(group)
    command: Any = group
    args = list(argv)
    # typer may vendor click: duck-type groups instead of isinstance(click.Group)
    while hasattr(command, "get_command") and args and not args[0].startswith("-"):
        sub = command.get_command(ctx, args.pop(0))
        assert sub is not None, f"no command {argv}"
        command = sub
    options = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for arg in args:
        if arg.startswith("--"):
            assert arg in options, f"{argv}: {arg} is not an option of {command.name}"


def test_the_cli_check_catches_a_wrong_command() -> None:
    with pytest.raises(AssertionError):
        check_cli(["db", "upgrad"])
    with pytest.raises(AssertionError):
        check_cli(["run", "--listen", "0.0.0.0"])


def test_dockerfile_base_user_and_install() -> None:
    assert one("FROM") == "python:3.11-slim"
    user = one("USER")
    assert user not in {"root", "0"}
    assert "useradd" in one("RUN") and user in one("RUN")
    assert "pip install ." in one("RUN")
    for word, rest in dockerfile():
        if word == "COPY":
            *sources, _target = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the build context"


def test_dockerfile_entrypoint_and_command_are_real() -> None:
    entry = json.loads(one("ENTRYPOINT"))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry == ["leadsync"] and "leadsync" in scripts
    command = json.loads(one("CMD"))
    check_cli(command)
    assert command[command.index("--port") + 1] == str(PORT)
    assert one("EXPOSE") == str(PORT)


def test_dockerfile_healthcheck_hits_healthz_with_what_the_image_has() -> None:
    check = one("HEALTHCHECK")
    assert f"127.0.0.1:{PORT}/healthz" in check
    argv = json.loads(check[check.index("CMD") + 3 :].strip())
    assert argv[0] == "python"  # curl is not in python:*-slim
    compile(argv[2], "<healthcheck>", "exec")
    from connector.runtime.server import build_app

    paths = {getattr(r, "path", None) for r in build_app(_NullRuntime(), {}).routes}
    assert "/healthz" in paths


def test_config_path_and_environment() -> None:
    config_env = [rest for word, rest in dockerfile() if word == "ENV" and CONFIG_ENV in rest]
    assert config_env == [f"{CONFIG_ENV}=/etc/leadsync/leadsync.yaml"]
    services = compose()["services"]
    for name in ("migrate", "leadsync"):
        service = services[name]
        for var in service["environment"]:
            assert not var.startswith("LEADSYNC_") or var in known_env(), var
        assert service["environment"][CONFIG_ENV] == "/etc/leadsync/leadsync.yaml"
        assert service["environment"]["LEADSYNC_STORE_URL"].startswith("postgresql+psycopg://")
        mounts = [v.split(":") for v in service["volumes"]]
        assert ["./leadsync.yaml", "/etc/leadsync/leadsync.yaml", "ro"] in mounts


def env_example() -> dict[str, str]:
    lines = (DOCKER / "leadsync.env.example").read_text().splitlines()
    return dict(ln.split("=", 1) for ln in lines if "=" in ln and not ln.startswith("#"))


def referenced_env(text: str) -> set[str]:
    """Variables a file reads: `${NAME}`, `${NAME:?...}`, `${NAME:-...}` (comments aside)."""
    code = "\n".join(
        ln.split(" #")[0] for ln in text.splitlines() if not ln.lstrip().startswith("#")
    )
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", code))


def test_the_example_config_is_complete_and_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADSYNC_STORE_URL", raising=False)
    for name in env_example():
        monkeypatch.setenv(name, "x")
    config = load_config(DOCKER / "leadsync.example.yaml")
    assert config.server.port == PORT and config.server.host == "0.0.0.0"
    assert config.facebook is not None  # type: ignore[attr-defined]


def test_every_secret_is_listed_in_the_env_example() -> None:
    listed = set(env_example())
    for name in ("leadsync.example.yaml", "compose.yaml"):
        wanted = referenced_env((DOCKER / name).read_text()) - {"LEADSYNC_SITE"}
        assert wanted <= listed, f"{name} reads {sorted(wanted - listed)}, not listed"
    assert "POSTGRES_PASSWORD" in listed and env_example()["POSTGRES_PASSWORD"] == ""


def test_compose_refuses_to_start_without_a_database_password() -> None:
    text = (DOCKER / "compose.yaml").read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD([^}]*)\}", text)
    assert len(uses) == 2 and all(u.startswith(":?") for u in uses)  # required, no default
    services = compose()["services"]
    assert "${POSTGRES_PASSWORD:?" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_mappings_and_import_files_are_mounted() -> None:
    for name in ("migrate", "leadsync"):
        mounts = [v.split(":") for v in compose()["services"][name]["volumes"]]
        assert ["./mappings", "/etc/leadsync/mappings", "ro"] in mounts
        assert ["./import", "/import", "ro"] in mounts
    assert (DOCKER / "mappings").is_dir() and (DOCKER / "import").is_dir()


def test_replicas_scale_behind_a_proxy_and_metrics_stay_inside() -> None:
    services = compose()["services"]
    daemon, proxy = services["leadsync"], services["proxy"]
    # No host port and no container name: `--scale leadsync=3` starts three.
    assert "ports" not in daemon and "container_name" not in daemon
    assert daemon["expose"] == [str(PORT)]
    assert proxy["volumes"][0] == "./Caddyfile:/etc/caddy/Caddyfile:ro"
    caddy = (DOCKER / "Caddyfile").read_text()
    assert re.search(r"dynamic a \{\s*name leadsync\s*port " + str(PORT), caddy)
    assert "@metrics path /metrics" in caddy and "respond @metrics" in caddy
    assert "TLS" in caddy and "HTTPS" in caddy  # the note on Meta's webhooks


def test_the_readme_shows_one_off_commands_in_the_container() -> None:
    from connector.cli import GROUPS, _register_plugins

    if not GROUPS["import"].registered_commands:  # adapters add `import csv`, `backfill ...`
        _register_plugins()
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"docker compose .*run --rm leadsync import csv /import/", readme)
    assert re.search(r"docker compose .*run --rm leadsync backfill facebook", readme)
    for line in re.findall(r"run --rm leadsync (.+)", readme):
        check_cli([a for a in line.split() if not a.startswith("/")][:3])


def test_compose_services() -> None:
    data = compose()
    services = data["services"]
    assert services["postgres"]["image"] == "postgres:15"
    volume = services["postgres"]["volumes"][0].split(":")[0]
    assert volume in data["volumes"]  # a named volume
    migrate, daemon = services["migrate"], services["leadsync"]
    assert migrate["command"] == ["db", "upgrade"]
    check_cli(migrate["command"])
    check_cli(daemon["command"])
    assert daemon["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert daemon["command"][daemon["command"].index("--port") + 1] == str(PORT)
    build = daemon["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    assert migrate["image"] == daemon["image"]


class _NullRuntime:
    store: Any = None
    config: Any = None
    stopping: Any = None
    replica = "test:0"

    def report(self, *args: Any, **kwargs: Any) -> None:
        pass

    def wake(self, job_id: str) -> None:
        pass
