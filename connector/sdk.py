"""The adapter SDK: the one module an adapter imports from the core.

An adapter (a package under adapters/, found through the `leadsync.adapters` entry
points) may use exactly what this module exports, and nothing else of `connector`:

- ports: what an adapter implements (`LeadSource`, `Destination`, `Plugin`, `Job`,
  `LiveDemo`) and what it is given (`Runtime`, `Batch`, `OutboxRow`, delivery results);
- models: `Lead`, `Problem`, the status `Catalogue`, the `Store` handle;
- mapping: `Mapping`, `FieldMap`, `load_mapping`, the header inference for drafts;
- the pipeline entry points: `Pipeline` (ingest a source or records), `IngestStats`;
- http: the shared HTTP layer (`HttpClient`, `ErrorTable`, `Scope`, actions, errors)
  and `metrics_hooks()` that count its calls into the daemon's metrics;
- webhooks: the durable `inbox` a handler stores deliveries in, `RateLimitedWarning`;
- health: `report_health` / `read_health` (`leadsync status`, pauses across replicas);
- CLI output: `state`, `out`, `err`, `print_stats`, `progress_bar`;
- test helpers: `SourceCase`, what a plugin's `contract_source(workdir)` returns so the
  contract suite (tests/contract/) runs its checks on the adapter with no list to keep,
  and `StatusCase`, what a two-way system's `contract_status(workdir)` returns (echo
  suppression, a change made there, a throttled push).

Everything else (cli internals, store tables, runtime internals) may change without
notice; a test (tests/unit/test_sdk.py) fails when an adapter reaches past this module.
- two-way systems: `StatusSystem`, `StatusObservation`, `Vocabulary`, the engine's
  `observe` and `links` (system_links: link, record_written, link_from_leads);
- store helpers an adapter's own state needs: `load_cursor` / `save_cursor` (a cursor
  committed with the adapter's writes), `open_by_record` (open issues by record, for a
  source that shows them back), `audience_state` (what was sent to each audience);
- segments: `Segment` and `SegmentCompiler` (a filter compiled for the store);
- the change feed (`changes`: subscribe to events in the writer's transaction) and the
  outbox (`outbox.enqueue`, `enqueue_many`: effects written with their cause); the
  engine's `Decision`, `set_by_person`, `catalogue_of`;
- store functions adapters publish their data through: `visitors` and `visit_writer`
  (the web tag), `reads` (contacts' match fields, their leads of a source, stored
  source ids), `contact_store` (show a contact);
- runtime names: `OUTBOX_JOB` (wake delivery), `REGISTRY` (the daemon's metrics);
- `normalize` (the core's normalisation and Meta match keys), `print_json`, and
  `ThreadedServer` (an emulator served on a thread) and `serve_until_interrupted`
  (`leadsync fake ...` until Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from connector import normalize
from connector.cli import err, out, print_json, print_stats, progress_bar, state
from connector.emulator import ThreadedServer, serve_until_interrupted
from connector.http import (
    IGNORE,
    RETRY,
    Action,
    ErrorTable,
    Fail,
    Hooks,
    HttpClient,
    HttpError,
    RateLimited,
    Scope,
    ThrottledError,
    TransientError,
    retry_after,
)
from connector.infer import Inference, draft, infer, refusal
from connector.logs import describe
from connector.mapping import FieldMap, Mapping, load_mapping, load_mapping_cached, mark_test_lead
from connector.model import Lead, Problem
from connector.pipeline import IngestStats, Pipeline
from connector.ports import (
    Batch,
    Delivered,
    DeliveryResult,
    Destination,
    Failed,
    Health,
    Job,
    LeadSource,
    LiveDemo,
    OutboxRow,
    Plugin,
    Retry,
    Runtime,
    SourceError,
    StatusObservation,
    StatusSystem,
)
from connector.runtime import inbox
from connector.runtime.daemon import OUTBOX_JOB
from connector.runtime.health import read as read_health
from connector.runtime.health import report as report_health
from connector.runtime.metrics import API_CALLS, API_ERRORS, REGISTRY, THROTTLED_SECONDS, WEBHOOKS
from connector.runtime.server import RateLimitedWarning
from connector.segments import Segment
from connector.segments.sql import Compiler as SegmentCompiler
from connector.statuses import Catalogue, UnknownStatusError
from connector.store import Store, open_store, reads, visit_writer, visitors
from connector.store import audiences as audience_state
from connector.store import contacts as contact_store
from connector.store.ingest import load_cursor, save_cursor
from connector.store.issues import open_by_record
from connector.sync import changes, links, outbox
from connector.sync.status import Decision, catalogue_of, observe, set_by_person
from connector.sync.vocabulary import Vocabulary


def metrics_hooks() -> Hooks:
    """`Hooks` for an `HttpClient` that count calls, errors (by code) and throttled
    seconds into the daemon's prometheus metrics, labelled by adapter name only."""
    return Hooks(
        call=lambda adapter: API_CALLS.labels(adapter).inc(),
        error=lambda adapter, code: API_ERRORS.labels(adapter, code).inc(),
        throttled=lambda adapter, seconds: THROTTLED_SECONDS.labels(adapter).inc(seconds),
    )


@runtime_checkable
class SourceCase(Protocol):
    """A lead source with data in it, made by the adapter for the contract suite.

    A plugin offers one through `contract_source(workdir: Path) -> SourceCase`; the
    suite (tests/contract/test_sources.py) finds it through the entry points and runs
    the same checks on every adapter, on SQLite and PostgreSQL. The case starts with
    six records in one stream."""

    config_model: type[BaseModel]
    """The adapter's config model: every field must carry a description."""
    lag_records: int
    """How many already-read records a read from a returned cursor may yield again
    (the records inside the source's lag window; 0 for an exact cursor)."""

    def source(self, store: Store) -> LeadSource:
        """A fresh source object over the case's data (as a new run would make it)."""

    def broken(self, store: Store) -> tuple[LeadSource, str]:
        """A source with bad credentials (or a missing file) and a phrase its
        `check()` error must contain (what a person should do)."""

    def add(self, n: int) -> None:
        """Add `n` new records to the stream (newer than every record so far)."""

    def order(self, cursor: Any) -> Any:
        """A comparable value of a cursor: a later cursor orders higher."""

    def throttle(self) -> Callable[[], int] | None:
        """Make the API throttle the next calls (as it really does: Meta's HTTP 400
        with a throttle code, a 429, ...) and return a function counting the throttled
        answers served so far; None when the source has no remote API."""

    def lift(self) -> None:
        """End the throttle `throttle` started (the API answers again)."""

    def close(self) -> None:
        """Stop what the case started (an emulator)."""


@runtime_checkable
class StatusCase(Protocol):
    """A two-way system with records in it, made by the adapter for the contract suite.

    A plugin offers one through `contract_status(workdir: Path) -> StatusCase`; the
    suite (tests/contract/test_status_systems.py) finds it through the entry points and
    checks, on SQLite and PostgreSQL, that our own writes coming back are dropped as
    echoes and that a change a person makes there is taken. The case starts with two
    records, each in the system's word for New, that the store has not seen yet."""

    name: str
    """The system's name: its `StatusSystem.name`, the outbox destination and the
    origin of what it shows."""

    def pull(self, store: Store) -> None:
        """One read of the system as the daemon's job does it (a pull, a poll): its
        records as leads, their statuses handed to the engine (`observe`)."""

    def system(self, store: Store) -> StatusSystem:
        """The system's push (its outbox destination), pointed at the emulator."""

    def word(self, status: str) -> str | None:
        """The system's word the push writes for the leadsync status `status`."""

    def set_there(self, external_id: str, status: str) -> None:
        """A person changes the record's status in the system to its word for `status`
        (the system's clock: later than anything so far)."""

    def shown(self, external_id: str) -> str | None:
        """The status word the system shows for the record now."""

    def throttle(self) -> Callable[[], int] | None:
        """Make the system throttle the push's calls as it really does, and return a
        function counting the throttled answers served; None: it has no such limit."""

    def lift(self) -> None:
        """End the throttle `throttle` started."""

    def close(self) -> None:
        """Stop what the case started (an emulator)."""


__all__ = [
    "API_CALLS",
    "API_ERRORS",
    "IGNORE",
    "OUTBOX_JOB",
    "REGISTRY",
    "RETRY",
    "THROTTLED_SECONDS",
    "WEBHOOKS",
    "Action",
    "Batch",
    "Catalogue",
    "Decision",
    "Delivered",
    "DeliveryResult",
    "Destination",
    "ErrorTable",
    "Fail",
    "Failed",
    "FieldMap",
    "Health",
    "Hooks",
    "HttpClient",
    "HttpError",
    "Inference",
    "IngestStats",
    "Job",
    "Lead",
    "LeadSource",
    "LiveDemo",
    "Mapping",
    "OutboxRow",
    "Pipeline",
    "Plugin",
    "Problem",
    "RateLimited",
    "RateLimitedWarning",
    "Retry",
    "Runtime",
    "Scope",
    "Segment",
    "SegmentCompiler",
    "SourceCase",
    "SourceError",
    "StatusCase",
    "StatusObservation",
    "StatusSystem",
    "Store",
    "ThreadedServer",
    "ThrottledError",
    "TransientError",
    "UnknownStatusError",
    "Vocabulary",
    "audience_state",
    "catalogue_of",
    "changes",
    "contact_store",
    "describe",
    "draft",
    "err",
    "inbox",
    "infer",
    "links",
    "load_cursor",
    "load_mapping",
    "load_mapping_cached",
    "mark_test_lead",
    "metrics_hooks",
    "normalize",
    "observe",
    "open_by_record",
    "open_store",
    "out",
    "outbox",
    "print_json",
    "print_stats",
    "progress_bar",
    "read_health",
    "reads",
    "refusal",
    "report_health",
    "retry_after",
    "save_cursor",
    "serve_until_interrupted",
    "set_by_person",
    "state",
    "visit_writer",
    "visitors",
]
