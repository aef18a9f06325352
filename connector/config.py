"""The YAML configuration: pydantic models, loading, and errors that point at the line.

Secrets and the store URL may come from the environment (pydantic-settings), so a
config file can be committed while tokens live in the service's environment.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector import yamlload
from connector.identity import IdentityRules
from connector.statuses import CANONICAL, Catalogue, Status

CONFIG_ENV = "LEADSYNC_CONFIG"
M = TypeVar("M", bound=BaseModel)
DEFAULT_CONFIG = Path("leadsync.yaml")


class ConfigError(ValueError):
    """A config (or mapping) file that cannot be used; each line names file:line and field."""


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None,
        description="SQLAlchemy URL of the store: sqlite:///path.db (default "
        "sqlite:///leadsync.db) or postgresql+psycopg://user@host/db. "
        "LEADSYNC_STORE_URL overrides it.",
    )


class CustomStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int = Field(description="Numeric id, stable forever; 1-999 and not a canonical id.")
    name: str = Field(description="Name shown to people and used in value maps.")
    rank: int = Field(description="Position in the funnel; automation never lowers it.")
    terminal: bool = Field(False, description="Only a person or an explicit rule may leave it.")

    @field_validator("id")
    @classmethod
    def _free_id(cls, value: int) -> int:
        if not 1 <= value <= 999:
            raise ValueError("status ids are between 1 and 999")
        if value in {s.id for s in CANONICAL}:
            raise ValueError(f"{value} is a canonical status id; rename it instead")
        return value


class StatusesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom: list[CustomStatus] = Field(
        default_factory=list, description="Statuses added by this deployment (e.g. Trial)."
    )
    rename: dict[int, str] = Field(
        default_factory=dict, description="New names for existing statuses, by id."
    )
    delete: list[int] = Field(
        default_factory=list,
        description="Statuses removed; their contacts move to Unknown (0) with a history entry.",
    )

    def catalogue(self) -> Catalogue:
        custom = [Status(s.id, s.name, s.rank, s.terminal) for s in self.custom]
        return Catalogue.build(custom, self.rename, self.delete)


IdentityKey = Literal["email", "phone", "external_id"]
SurvivorRule = Literal["customer", "rank", "person_changed", "oldest"]


def _default_keys() -> list[IdentityKey]:
    return ["email", "phone", "external_id"]


def _default_survivor() -> list[SurvivorRule]:
    return ["customer", "rank", "person_changed", "oldest"]


class IdentityConfig(BaseModel):
    """Which records are one person, and who survives an automatic merge."""

    model_config = ConfigDict(extra="forbid")

    keys: list[IdentityKey] = Field(
        default_factory=_default_keys,
        min_length=1,
        description="Fields that identify a person, in priority order: a record whose "
        "keys point at contacts that cannot be one person goes to the one found by the "
        "first key. Leave one out to stop it joining records (e.g. a shared phone).",
    )
    phone_requires_name: bool = Field(
        False,
        description="A shared phone joins a record to a contact only when both have a "
        "name and the names agree (offices and families share phones). Off: a phone "
        "joins unless the names clearly disagree, which is never merged automatically.",
    )
    survivor: list[SurvivorRule] = Field(
        default_factory=_default_survivor,
        min_length=1,
        description="How the survivor of an automatic merge is chosen, rule by rule: "
        "customer (Won outranks everything, so a customer stays a customer), rank "
        "(furthest along the funnel), person_changed (the one a person changed last), "
        "oldest. The oldest always decides last. A merge by hand keeps the person's "
        "choice.",
    )

    @field_validator("keys", "survivor")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("list each entry once")
        return value

    def rules(self) -> IdentityRules:
        return IdentityRules(tuple(self.keys), self.phone_requires_name, tuple(self.survivor))


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Address the daemon's HTTP server binds to.")
    port: int = Field(8787, ge=0, le=65535, description="Port for webhooks, /healthz, /metrics.")
    public_url: str | None = Field(
        None,
        description="The URL the outside world reaches this server at (what Meta's or "
        "HubSpot's webhook settings point to), when it differs from host:port.",
    )
    max_body: int = Field(
        1 << 20,
        ge=1,
        description="Largest request body accepted, in bytes (default 1 MiB: a Meta "
        "webhook is a few KB); a larger one is answered 413 before it is read.",
    )
    route_max_body: dict[str, int] = Field(
        default_factory=dict,
        description="Per URL path, a body limit in bytes instead of `max_body` "
        "(e.g. {/webhooks/hubspot: 4194304}).",
    )
    webhook_attempts: int = Field(
        5,
        ge=1,
        description="Failed attempts after which a webhook delivery becomes a dead letter "
        "(listed by `leadsync status` and /metrics, never claimed again).",
    )


class JobSchedule(BaseModel):
    """When one scheduled job runs, overriding what its adapter chose."""

    model_config = ConfigDict(extra="forbid")

    every: float | None = Field(None, gt=0, description="Run every N seconds.")
    cron: str | None = Field(
        None, description='Run on a crontab, in UTC (e.g. "*/5 * * * *" or "0 3 * * *").'
    )
    jitter: float | None = Field(
        None, ge=0, description="Start up to N seconds late at random (spreads replicas' load)."
    )
    misfire_grace: float | None = Field(
        None,
        gt=0,
        description="Drop a run that could not start within N seconds of its time. "
        "Unset: a late run still runs, once, however late.",
    )

    @model_validator(mode="after")
    def _one_trigger(self) -> JobSchedule:
        if self.every is not None and self.cron is not None:
            raise ValueError("set `every` or `cron`, not both")
        if self.cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.cron)
            except ValueError as exc:
                raise ValueError(f"invalid crontab {self.cron!r}: {exc}") from None
        return self


class OutboxConfig(BaseModel):
    """How the outbox delivers effects to connected systems (connector.sync.outbox)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(
        12,
        ge=1,
        description="Attempts before a row becomes a dead letter (`leadsync outbox list "
        "--state failed`). Counted when a row is claimed, so a row whose delivery kills "
        "the process also ends here. With the default backoff, 12 attempts span about "
        "2.5-5 hours of a destination being down.",
    )
    lease_seconds: float = Field(
        300.0,
        gt=0,
        description="How long a claimed row is reserved for the replica delivering it; "
        "after that (the replica died) another one delivers it again. Longer than any "
        "one delivery call takes.",
    )
    backoff_base: float = Field(
        30.0, gt=0, description="Seconds before the second attempt; doubled each time."
    )
    backoff_cap: float = Field(3600.0, gt=0, description="Longest wait between attempts.")
    batch: int = Field(100, ge=1, le=10000, description="Rows handed to a destination at once.")


class SyncConfig(BaseModel):
    """Two-way status sync (connector.sync.status): how conflicting changes from
    connected systems, sources and people are decided. The defaults: the newest change
    by the system's own timestamp wins; automation never lowers rank; terminal statuses
    change only by a person or an explicit rule."""

    model_config = ConfigDict(extra="forbid")

    authoritative: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per system, statuses only it decides, e.g. {hubspot: [Won]}: the "
        "system's change to one of them is accepted whatever its age or rank (an "
        "explicit rule, so it may leave a terminal status too), and no other system, "
        "source or person may move a contact into or out of one of them.",
    )
    fan_out: bool = Field(
        True,
        description="Push accepted status changes and new contacts to every connected "
        "two-way system (off: the store still decides and records, nothing is sent).",
    )


class LeadsyncConfig(BaseModel):
    """The whole leadsync.yaml. Installed adapters add their own sections (see
    `config_model`)."""

    model_config = ConfigDict(extra="forbid")

    store: StoreConfig = Field(default_factory=StoreConfig, description="Where contacts live.")
    default_region: str | None = Field(
        None,
        description="ISO 3166 country for phone numbers with no country code when neither "
        "the record nor its source says (e.g. MY, PL, VN, US).",
        pattern="^[A-Z]{2}$",
    )
    statuses: StatusesConfig = Field(
        default_factory=StatusesConfig, description="Custom statuses, renames and deletions."
    )

    identity: IdentityConfig = Field(
        default_factory=IdentityConfig,
        description="Identity keys, possible duplicates and the merge survivor rule.",
    )
    server: ServerConfig = Field(
        default_factory=ServerConfig, description="The daemon's HTTP server."
    )
    outbox: OutboxConfig = Field(
        default_factory=OutboxConfig, description="Delivery of outbound effects."
    )
    sync: SyncConfig = Field(
        default_factory=SyncConfig, description="Two-way status sync and its conflict rules."
    )
    schedules: dict[str, JobSchedule] = Field(
        default_factory=dict,
        description="Per job id (facebook.poll, facebook.webhooks, outbox.deliver, ...; "
        "`leadsync status` lists them): when it runs, instead of its adapter's default.",
    )

    def catalogue(self) -> Catalogue:
        return self.statuses.catalogue()


@cache
def config_model() -> type[LeadsyncConfig]:
    """LeadsyncConfig with an optional section for each installed adapter that declares
    one (`Plugin.config_model`): one file, one schema, errors with line numbers for all,
    and the core still imports no adapter."""
    from connector.ports import plugins

    sections: dict[str, Any] = {}
    for name, plugin in sorted(plugins().items()):
        model = getattr(plugin, "config_model", None)
        if model is None:
            continue
        key = getattr(plugin, "config_key", name)
        doc = (model.__doc__ or name).strip().splitlines()[0]
        sections[key] = (model | None, Field(None, description=doc))
    if not sections:
        return LeadsyncConfig
    return create_model("LeadsyncConfig", __base__=LeadsyncConfig, **sections)


class Environment(BaseSettings):
    """Settings read from the environment."""

    model_config = SettingsConfigDict(env_prefix="LEADSYNC_")

    store_url: str | None = Field(None, description="Overrides store.url.")
    config: Path | None = Field(None, description="Path of the YAML config.")


def _node_at(root: yaml.Node | None, loc: tuple[int | str, ...]) -> yaml.Node | None:
    """The YAML node at a pydantic error location, as deep as it exists."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if str(k.value) == str(part)]
            if not match:
                return node
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def parse_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """The data in a YAML file and its node tree (for line numbers in errors)."""
    try:
        return yamlload.load(path)
    except yamlload.YamlError as exc:
        raise ConfigError(str(exc)) from None


_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def expand_env(data: Any, root: yaml.Node | None, path: Path) -> Any:
    """Replace every value written `${NAME}` with the environment variable NAME, so a
    config file can be committed while tokens live in the service's environment. A
    variable that is not set is an error naming the file, line and variable."""
    missing: list[str] = []

    def walk(value: Any, loc: tuple[int | str, ...]) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(value)]
        match = _ENV_REF.match(value.strip()) if isinstance(value, str) else None
        if match is None:
            return value
        name = match.group(1)
        if name not in os.environ:
            node = _node_at(root, loc)
            line = f":{node.start_mark.line + 1}" if node is not None else ""
            field = ".".join(str(p) for p in loc)
            missing.append(f"{path}{line}: {field}: environment variable {name} is not set")
            return value
        return os.environ[name]

    expanded = walk(data, ())
    if missing:
        raise ConfigError("\n".join(missing))
    return expanded


# Patterns of the config's fields, said in words: `'^[A-Z]{2}$'` helps nobody.
PATTERN_WORDS = {
    "^[A-Z]{2}$": "a two-letter country code in capitals (ISO 3166), e.g. MY, PL, VN, US",
    r"^\d+$": "digits only",
    r"^v\d+\.\d+$": "a version like v26.0",
}


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names the model allows at `loc` (a mapping's location), if it knows."""
    from typing import get_args, get_origin

    current: Any = model
    for part in loc:
        current = _plain(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = info.annotation
        elif get_origin(current) in (dict, list) and get_args(current):
            current = get_args(current)[-1]  # a dict's values, a list's items
        else:
            return []
    current = _plain(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _plain(annotation: Any) -> Any:
    """`X` from `X | None` and `Annotated[X, ...]`; a model or container among unions."""
    from typing import Annotated, get_args, get_origin

    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        args = [a for a in get_args(annotation) if a is not type(None)]
        if get_origin(annotation) in (dict, list) or not args:
            return annotation
        for arg in args:
            plain = _plain(arg)
            if (isinstance(plain, type) and issubclass(plain, BaseModel)) or get_origin(plain) in (
                dict,
                list,
            ):
                return plain
        return args[0] if len(args) == 1 else annotation


def explain(err: Any, model: type[BaseModel]) -> str:
    """One validation error in words: unknown keys get "did you mean", patterns are
    described instead of quoted."""
    import difflib

    if err["type"] == "extra_forbidden":
        loc = tuple(err["loc"])
        known = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1) if known else []
        hint = f"; did you mean `{close[0]}`?" if close else ""
        allowed = f" (known keys: {', '.join(known)})" if known and not close else ""
        return f"unknown key `{loc[-1]}`{hint}{allowed}"
    if err["type"] == "string_pattern_mismatch":
        pattern = str((err.get("ctx") or {}).get("pattern", ""))
        words = PATTERN_WORDS.get(pattern, f"text matching {pattern}")
        return f"should be {words}; got {err.get('input')!r}"
    return str(err["msg"])


def validate_file(path: Path, model: type[M]) -> M:
    """Load `path` into `model`; errors name file:line, the field path and the problem."""
    data, root = parse_yaml(path)
    data = expand_env(data, root, path)
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        found: list[tuple[int, str]] = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            node = _node_at(root, loc)
            number = node.start_mark.line + 1 if node is not None else 0
            line = f":{number}" if node is not None else ""
            field = ".".join(str(p) for p in loc) or "(top level)"
            found.append((number, f"{path}{line}: {field}: {explain(err, model)}"))
        # In the order of the file, so the admin reads them top to bottom.
        ordered = sorted(found, key=lambda f: f[0])
        raise ConfigError("\n".join(text for _, text in ordered)) from None


def load_config(path: Path | str | None = None) -> LeadsyncConfig:
    """The config at `path`, else $LEADSYNC_CONFIG, else ./leadsync.yaml if present,
    else defaults; the store URL from the environment wins over the file."""
    env = Environment()
    chosen = Path(path) if path else env.config
    if chosen is None and DEFAULT_CONFIG.exists():
        chosen = DEFAULT_CONFIG
    model = config_model()
    config = validate_file(chosen, model) if chosen else model()
    if env.store_url:
        config.store.url = env.store_url
    return config


def json_schema() -> dict[str, Any]:
    return config_model().model_json_schema()


__all__ = [
    "CONFIG_ENV",
    "ConfigError",
    "LeadsyncConfig",
    "config_model",
    "json_schema",
    "load_config",
    "validate_file",
]
