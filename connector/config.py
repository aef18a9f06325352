"""The YAML configuration: its pydantic models and loading (the file's errors that point
at the line are connector/validation.py's).

Secrets and the store URL may come from the environment (pydantic-settings), so a
config file can be committed while tokens live in the service's environment.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.identity import IdentityRules
from connector.statuses import CANONICAL, Catalogue, Status
from connector.validation import ConfigError, parse_yaml, validate_file

CONFIG_ENV = "LEADSYNC_CONFIG"
DEFAULT_CONFIG = Path("leadsync.yaml")


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


def _checked_where(value: str) -> str:
    """The expression's grammar, checked where the YAML is read (names and status words
    are checked against the catalogue by connector/checks.py, which knows it)."""
    from connector.segments.grammar import SegmentError, parse

    try:
        parse(value)
    except SegmentError as exc:
        raise ValueError(f"{exc} in `{value}`") from None
    return value


class SegmentConfig(BaseModel):
    """A named filter over contacts, in the segment language (README: "Segments and
    views"); audiences (next) are built from segments."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="How commands and other rules name it.")
    where: str = Field(
        description="The filter, e.g. `status >= Qualified and source = facebook and "
        "score >= 70`; errors name the column."
    )
    description: str | None = Field(None, description="What it is for, for people.")

    @field_validator("where")
    @classmethod
    def _grammar(cls, value: str) -> str:
        return _checked_where(value)


class ViewConfig(SegmentConfig):
    """A saved view (Callio's smart views, InStream's lists): a filter with its sort and
    columns, for `leadsync contacts list --view NAME` and `contacts export --view`."""

    sort: str | None = Field(
        None, description="Sort keys, `-` for descending: e.g. `-score,status,created`."
    )
    columns: list[str] | None = Field(
        None, description="Columns shown and exported (default: id, name, email, ...)."
    )

    @field_validator("sort")
    @classmethod
    def _sort(cls, value: str | None) -> str | None:
        from connector.segments.query import check_sort

        check_sort(value)
        return value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str] | None) -> list[str] | None:
        from connector.segments.query import check_columns

        if value is not None:
            check_columns(value)
        return value


S = TypeVar("S", bound=SegmentConfig)


def _unique_names(items: list[S]) -> list[S]:
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            raise ValueError(f"`{item.name}` is named twice")
        seen.add(item.name)
    return items


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

    segments: list[SegmentConfig] = Field(
        default_factory=list,
        description="Named filters over contacts (`name`, `where`), for rules and audiences.",
    )
    views: list[ViewConfig] = Field(
        default_factory=list,
        description="Saved views (`name`, `where`, `sort`, `columns`): `leadsync views list`, "
        "`contacts list --view NAME`, `contacts export --view NAME`.",
    )

    @field_validator("segments", "views")
    @classmethod
    def _named_once(cls, value: list[S]) -> list[S]:
        return _unique_names(value)

    def catalogue(self) -> Catalogue:
        return self.statuses.catalogue()

    def view(self, name: str) -> ViewConfig:
        """The view called `name` (a segment of that name also serves, unsorted)."""
        for view in self.views:
            if view.name == name:
                return view
        for segment in self.segments:
            if segment.name == name:
                return ViewConfig(name=segment.name, where=segment.where)
        known = ", ".join(v.name for v in [*self.views, *self.segments]) or "none configured"
        raise LookupError(f"no view or segment is called `{name}` (known: {known})")


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
    "parse_yaml",
    "validate_file",
]
