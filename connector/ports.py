"""The interfaces adapters implement. The core depends on these, never on an adapter.

Adapters are found through the `leadsync.adapters` entry-point group: each names a
`Plugin` object, so the CLI and the daemon can use every installed adapter without the
core importing one (the way pytest and dlt find their plugins).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import typer
from pydantic import BaseModel
from starlette.routing import BaseRoute

from connector.model import Lead
from connector.store import Store


class SourceError(RuntimeError):
    """A source cannot be read; the message says what the admin should do."""


@dataclass(slots=True)
class Batch:
    """Records read from a stream and the cursor that is valid once they are stored.

    The pipeline commits `cursor` in the same transaction as the records, so a crash
    either keeps both or neither.
    """

    records: list[Lead]
    cursor: Any
    # Rows the source read and left out because they hold nothing (blank CSV lines):
    # counted in the ingest summary, so its outcomes add up to the rows read.
    skipped: int = 0


@runtime_checkable
class LeadSource(Protocol):
    """Something leads come from: a lead form, a spreadsheet, a file, an inbox."""

    name: str
    """The source name stored with every lead (unique per deployment)."""

    def check(self) -> None:
        """Raise SourceError with an actionable message if the source cannot be read."""

    def streams(self) -> list[str]:
        """The independent streams of the source (forms, sheets, files), each with a cursor."""

    def read(self, stream: str, cursor: Any) -> Iterator[Batch]:
        """Records after `cursor` (None: from the start), in batches with their cursors."""

    def context(self) -> dict[str, Any]:
        """What a quarantine retry needs to map a raw record again (kind, mapping, region)."""


Health = Literal["ok", "failing", "paused"]


class Runtime(Protocol):
    """What the daemon (`leadsync run`) gives adapters' jobs and webhook routes."""

    store: Store
    config: Any
    """The whole configuration; an adapter reads its own section (`config.facebook`)."""
    stopping: threading.Event
    """Set on SIGTERM/SIGINT: finish the batch in hand, commit, and return."""
    replica: str
    """This process's name among replicas (host:pid), for claims and job runs."""

    def report(
        self,
        source: str,
        state: Health,
        reason: str | None = None,
        *,
        until: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record a source's or system's health for `leadsync status` and the logs:
        `failing` with what a person should do, `paused` until a throttle ends, `ok`."""

    def wake(self, job_id: str) -> None:
        """Run a job as soon as possible (a webhook arrived), without waiting for its
        next scheduled time; a no-op outside the daemon."""


@dataclass(slots=True)
class Job:
    """A scheduled job an adapter contributes to `leadsync run`.

    Exactly one of `every` (seconds) and `cron` (crontab, e.g. "*/5 * * * *") is set.
    The daemon runs at most one instance of a job at a time across all replicas (a
    PostgreSQL advisory lock) and coalesces missed runs into one."""

    id: str
    """Stable and unique ("facebook.poll"): names its lock, metrics and status rows."""
    run: Callable[[Runtime], object]
    """Does the work; may return counts ({"leads": 120, "quarantined": 3}) that the
    daemon logs with the run (numbers only: never anything personal)."""
    every: float | None = None
    cron: str | None = None
    jitter: float = 0.0
    misfire_grace: float | None = None
    """How late (seconds) a run may start and still run. None, the default: however late
    (after a stall, a suspend or a long run of another job), it runs once. Set it only
    for work that is worthless when late; APScheduler then drops the run and logs it."""


class LiveDemo(Protocol):
    """An adapter's part of `leadsync demo`: a local emulator the demo's daemon reads."""

    title: str

    def section(self) -> tuple[str, dict[str, Any]]:
        """The config section (key, values) that points the daemon at the emulator."""

    def start(self, server_url: str) -> None:
        """The daemon's server is up at `server_url`: subscribe its webhooks."""

    def tick(self, elapsed: float) -> None:
        """Called about twice a second while the demo runs: new leads may arrive."""

    def summary(self) -> list[str]:
        """Lines for the closing summary (what the emulator served and sent)."""

    def stop(self) -> None:
        """Shut the emulator down."""


class Plugin(Protocol):
    """What an adapter package offers the core; every member is optional."""

    name: str

    config_key: str
    """The adapter's section in leadsync.yaml (defaults to `name`)."""
    config_model: type[BaseModel]
    """The pydantic model of that section; secrets as SecretStr, every field described."""

    def register_cli(self, groups: dict[str, typer.Typer]) -> None:
        """Add the adapter's commands to the CLI's groups (e.g. `import csv`, `fake facebook`)."""

    def remap(self, raw: Mapping[str, Any], context: Mapping[str, Any], ref: str) -> Lead:
        """Map a quarantined raw record again, with the current mapping."""

    def jobs(self, runtime: Runtime) -> Sequence[Job]:
        """The scheduled jobs the configuration enables (none when its section is absent)."""

    def routes(self, runtime: Runtime) -> Sequence[BaseRoute]:
        """HTTP routes for the daemon's server (webhooks, collectors), mounted as given."""

    def demo_live(self) -> LiveDemo:
        """The adapter's emulator for `leadsync demo` (started when this is called)."""

    def destinations(self, runtime: Runtime) -> Sequence[Destination]:
        """Where outbox rows go (a CRM's status API, an audience), by `Destination.name`."""

    contract_exempt: str
    """Why the contract suite's source checks do not apply to this adapter, and where it
    is tested instead (absent: it offers `contract_source` or `contract_status`)."""

    def contract_source(self, workdir: Path) -> Any:
        """A `connector.sdk.SourceCase` for the contract suite's lead-source checks."""

    def contract_status(self, workdir: Path) -> Any:
        """A `connector.sdk.StatusCase` for the two-way checks (a `StatusSystem`'s
        adapter): echo suppression, a change made there, a throttled push."""

    def status_systems(self, config: Any) -> list[str]:
        """The two-way systems (`StatusSystem.name`) this configuration connects (empty
        when the adapter's section is absent), so that any process (CLI, import, daemon)
        knows where status changes fan out without starting the adapter."""

    def subscribers(
        self, config: Any
    ) -> Sequence[tuple[str, Callable[[Any, Sequence[Any], datetime], None]]]:
        """Change-feed subscribers (name, fn) this configuration needs in every process
        that changes contacts (CLI, import, daemon); empty when the adapter's section is
        absent. `connector.sync.fanout.connect` installs them next to the fan-out, so an
        adapter turns changes into outbox rows in the change's transaction, as the
        fan-out does (fn is a `connector.sync.changes.Subscriber`)."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One outbound effect to deliver (see connector.sync.outbox)."""

    id: int
    destination: str
    kind: str
    key: str
    payload: Any
    contact_id: int | None
    attempts: int
    """Delivery attempts so far, this one included."""
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivered:
    """The destination has the effect."""


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure: try again after `after` seconds (None: the outbox's backoff)."""

    error: str
    after: float | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """A permanent failure: never retried; kept with its error for a person to look at."""

    error: str


DeliveryResult = Delivered | Retry | Failed


@runtime_checkable
class Destination(Protocol):
    """Something outbox rows are delivered to; `name` is the rows' `destination`."""

    name: str
    # Optional: `batch_size: int`, the most rows one call takes (the outbox hands it that
    # many unless the deployment sets `outbox.batch`); not part of the protocol so that a
    # destination without it still satisfies it.

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        """Deliver a batch; one result per row, in the order of `rows`. Raising counts as
        `Retry` for every row of the batch."""


@cache
def plugins() -> dict[str, Plugin]:
    """Installed adapters, by name (entry points of the `leadsync.adapters` group)."""
    found: dict[str, Plugin] = {}
    for ep in entry_points(group="leadsync.adapters"):
        found[ep.name] = ep.load()
    return found


# -- two-way status sync (connector.sync.status) --------------------------------------


@dataclass(frozen=True, slots=True)
class StatusObservation:
    """A status value seen in a two-way system (pulled or pushed by webhook)."""

    system: str
    """The system's name ("hubspot"), as its `StatusSystem.name`."""
    external_id: str
    """The system's record id (a HubSpot contact id)."""
    value: str | None
    """The system's own word as given ("OPEN", "customer"); None: the value was cleared."""
    changed_at: datetime
    """The system's own timestamp for this value (aware, UTC): the recency rule's clock."""
    by_person: bool
    """A person changed it there (False: automation, an integration, or not known)."""
    actor: str | None = None
    """Who, as the system names them (a user id), never PII; kept in the history."""
    identity: Mapping[str, str] = field(default_factory=dict)
    """email/phone/first_name/last_name: finds the contact when no link exists yet."""


@runtime_checkable
class StatusSystem(Destination, Protocol):
    """A system whose status we read and write (a CRM, a sheet). `deliver` pushes the
    outbox rows of kinds "status" and "contact" to it; after a push it records what it
    wrote with `connector.sync.links.record_written` (the echo check reads it)."""

    name: str
