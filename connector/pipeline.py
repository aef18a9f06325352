"""Ingest: raw records -> normalise -> resolve -> upsert, one transaction per batch.

Normalising is CPU-bound (phone parsing and email validation cost tens of µs each), so
batches are normalised in worker processes while the main process writes the previous
batch: on two cores that roughly doubles throughput. Writes stay in one process and
one transaction per batch, with the source's cursor, so a crash loses nothing and
repeats nothing: the next run starts from the last committed cursor, and records
re-read across the boundary are recognised by (source, source id) and payload hash.
"""

from __future__ import annotations

import gc
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import Any

import structlog
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from connector import workers
from connector.identity import (
    Normalised,
    Resolver,
    assemble,
    normalise_many,
    prepare,
    slim_leads,
)
from connector.model import Lead, Resolved
from connector.ports import Batch, LeadSource
from connector.runtime.metrics import LEADS_INGESTED, QUARANTINED
from connector.store import Store, issues
from connector.store import ingest as writes
from connector.store import quarantine as quarantine_store
from connector.store.races import lost_race
from connector.store.tables import quarantine
from connector.text import clean_leads

log = structlog.get_logger(__name__)

# Garbage-collector thresholds while ingesting. A batch keeps ~100,000 objects alive
# (records, plan, rows) that are freed by reference counting, not by the collector; at
# the default (700, 10, 10) their allocation triggers a full collection every few
# thousand records, which cost a third of the writer's time. The first threshold is
# above what a batch keeps alive: at 50,000 a young collection still ran twice a batch
# over its live records (~2.5 ms each, 2-5 µs a lead of the writer, py-spy showed it
# inside whatever allocated: `_create`, the insert tuples). What a batch leaves in
# reference cycles is collected once the batch is committed (_collect_batch_garbage),
# so memory stays flat.
_GC_THRESHOLDS = (500_000, 20, 100)

# Attempts for a batch that lost a race to another writer: on a unique key (another
# replica or source created the same person first), a deadlock or serialization
# failure (PostgreSQL), or contacts merged away under it. Re-resolving sees their rows.
_RACE_ATTEMPTS = 5


def _lost_race(exc: BaseException) -> bool:
    return isinstance(exc, (IntegrityError, writes.StaleRead)) or lost_race(exc)


@dataclass
class IngestStats:
    """What an ingest did. `rows` counts records read, whatever became of them, and
    each has exactly one outcome: rows = created + updated + merged + unchanged +
    folded + quarantined + skipped.

    `folded`: landed on a contact an earlier record of the same batch created or
    changed (the same person again). `skipped`: blank rows, which hold nothing."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    merged: int = 0
    unchanged: int = 0
    folded: int = 0
    quarantined: int = 0
    skipped: int = 0
    # Reasons are categories (`budget: not a number`), never values: a bad column is
    # one reason with a count. Whole records and single fields are counted apart.
    resolved: int = 0
    """Open quarantine entries this ingest closed: records that came in fine, and
    field issues whose value came in fixed."""
    reasons: Counter[str] = field(default_factory=Counter)
    field_issues: int = 0
    field_reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def outcomes(self) -> int:
        """The sum of the outcomes, which equals `rows` (tests check it)."""
        return (
            self.created
            + self.updated
            + self.merged
            + self.unchanged
            + self.folded
            + self.quarantined
            + self.skipped
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = dict(self.reasons.most_common())
        out["field_reasons"] = dict(self.field_reasons.most_common())
        out["seconds"] = round(self.seconds, 3)
        return out


def identifies(record: Resolved) -> bool:
    """Whether a record can be ingested: something identifies the person and every
    problem it has is one field's (left out and kept as a field issue)."""
    return bool(record.keys) and all(p.kind == "field" for p in record.problems)


def _prepare_many(records: list[Lead], region: str | None) -> list[Resolved]:
    return [prepare(r, region) for r in records]


def _assembled(batch: Batch, future: Future[list[Normalised]]) -> list[Resolved]:
    results = future.result()
    return [assemble(lead, done) for lead, done in zip(batch.records, results, strict=True)]


class _DryRun(Exception):
    pass


class Pipeline:
    """Ingests leads into a store.

    `workers`: processes that normalise (default: one per core but the writer's;
    0 normalises inline).
    `batch_size`: records per transaction when the source hands over larger batches.
    """

    def __init__(
        self,
        store: Store,
        *,
        default_region: str | None = None,
        workers: int | None = None,
        batch_size: int = 2000,
        dry_run: bool = False,
        progress: Callable[[IngestStats], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.default_region = default_region
        # One core writes; the others normalise. On one core, normalise inline.
        self.workers = max((os.cpu_count() or 1) - 1, 0) if workers is None else workers
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.progress = progress
        self.clock = clock
        self.stats = IngestStats()
        self._dry_conn: Connection | None = None

    # -- entry points -------------------------------------------------------------

    def run(self, source: LeadSource, streams: Iterable[str] | None = None) -> IngestStats:
        """Read every stream of `source` from its stored cursor and ingest it."""
        started = time.perf_counter()
        context = source.context()
        with _rarer_gc(), self._dry_run_scope():
            for stream in streams or source.streams():
                with self._transaction() as conn:
                    cursor = writes.load_cursor(conn, source.name, stream)
                batches = self._split(source.read(stream, cursor))
                for batch, resolved in self._prepared(batches):
                    self._write(
                        source.name, stream, batch.cursor, resolved, context, None, batch.skipped
                    )
        self.stats.seconds += time.perf_counter() - started
        return self.stats

    def ingest(
        self,
        source: str,
        records: Iterable[Lead],
        context: dict[str, Any] | None = None,
        *,
        also: Callable[[Connection], None] | None = None,
    ) -> IngestStats:
        """Ingest records that carry no cursor (a webhook delivery, a one-off list).

        `also` runs in the transaction of the last batch, after its rows: what must be
        true exactly when the records are stored (a webhook delivery marked done)."""
        started = time.perf_counter()
        batches = list(self._split(iter([Batch(list(records), None)])))
        last = len(batches) - 1
        with _rarer_gc(), self._dry_run_scope():
            for i, (batch, resolved) in enumerate(self._prepared(iter(batches))):
                self._write(
                    source,
                    None,
                    None,
                    resolved,
                    context or {},
                    also if i == last else None,
                    batch.skipped,
                )
        self.stats.seconds += time.perf_counter() - started
        return self.stats

    # -- stages -------------------------------------------------------------------

    def _split(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        # A source's batch may be a whole file; only its last slice carries the cursor,
        # so an interrupted batch is re-read from the previous cursor (and deduped).
        for batch in batches:
            records = batch.records
            clean_leads(records)  # text no store can hold (NUL), cleaned on both alike
            if len(records) <= self.batch_size:
                yield batch
                continue
            last = len(records) - self.batch_size
            for start in range(0, len(records), self.batch_size):
                part = records[start : start + self.batch_size]
                # Blank rows are counted once, with the slice that carries the cursor.
                yield Batch(
                    part,
                    batch.cursor if start >= last else _KEEP,
                    batch.skipped if start >= last else 0,
                )

    def _prepared(self, batches: Iterator[Batch]) -> Iterator[tuple[Batch, list[Resolved]]]:
        region = self.default_region
        first = next(batches, None)
        if first is None:
            return
        second = next(batches, None)
        if second is None or self.workers == 0:
            # Small jobs (a webhook, a short file) are not worth starting processes for.
            yield first, _prepare_many(first.records, region)
            if second is not None:
                yield second, _prepare_many(second.records, region)
                for batch in batches:
                    yield batch, _prepare_many(batch.records, region)
            return
        ctx = get_context("forkserver" if "forkserver" in _methods() else "spawn")
        if ctx.get_start_method() == "forkserver":
            # Workers need the normalisers only; by default the fork server would import
            # __main__ (the whole CLI, SQLAlchemy included) into every worker.
            ctx.set_forkserver_preload(["connector.identity", "connector.workers"])
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=ctx,
            initializer=workers.init,
            initargs=(os.getpid(), _GC_THRESHOLDS),
        )
        with pool:
            pending: deque[tuple[Batch, Future[list[Normalised]]]] = deque()
            ahead = self.workers + 1  # bounded read-ahead keeps memory flat
            for batch in _chain(first, second, batches):
                # Workers get only what normalising reads (not the raw payload) and send
                # back only what it adds: pickling is the price of every process hop.
                job = pool.submit(normalise_many, slim_leads(batch.records), region)
                pending.append((batch, job))
                if len(pending) > ahead:
                    done, future = pending.popleft()
                    yield done, _assembled(done, future)
            while pending:
                done, future = pending.popleft()
                yield done, _assembled(done, future)

    def _write(
        self,
        source: str,
        stream: str | None,
        cursor: Any,
        resolved: list[Resolved],
        context: dict[str, Any],
        also: Callable[[Connection], None] | None = None,
        skipped: int = 0,
    ) -> None:
        # One bad field never loses a person: a record is quarantined whole only when
        # nothing identifies the person or it cannot be read; its bad fields are left
        # out of the contact and kept as field issues (store/issues.py).
        good: list[Resolved] = []
        bad: list[Resolved] = []
        for record in resolved:  # one test a record, not one a list
            (good if identifies(record) else bad).append(record)
        for attempt in range(1, _RACE_ATTEMPTS + 1):
            try:
                with self._transaction() as conn:
                    now = self.clock()
                    keys, known, states = writes.lookup(conn, source, good)
                    resolver = Resolver(
                        self.store.catalogue,
                        now,
                        f"source:{source}",
                        keys,
                        known,
                        states,
                        self.store.identity,
                    )
                    for record in good:
                        resolver.add(record)
                    plan = resolver.finish()
                    writes.apply(conn, plan, now)
                    # The stream (a CSV's file, a form) is kept with the entry, so the
                    # list can say which file or form to fix.
                    where = {**context, "stream": stream} if stream and bad else context
                    filed = writes.quarantine_records(conn, bad, where, now)
                    # Contacts stored before this batch (ids > 0): only they can
                    # have open field issues that these records fix.
                    landed = {
                        sid: contact
                        for sid, w in plan.leads.items()
                        if (contact := plan.find(w.contact_id)) > 0
                    }
                    merged = {m.absorbed: plan.find(m.survivor) for m in plan.merges}
                    issued, fixed = issues.settle(conn, source, good, context, now, landed, merged)
                    # The same records ingested fine now: their open entries close.
                    closed = quarantine_store.resolve_reingested(conn, source, good, now)
                    if stream is not None and cursor is not _KEEP:
                        writes.save_cursor(conn, source, stream, cursor, now)
                    if also is not None:
                        also(conn)
                break
            except (IntegrityError, DBAPIError, writes.StaleRead) as exc:
                if attempt == _RACE_ATTEMPTS or not _lost_race(exc):
                    raise
                log.info("ingest.retry_race", source=source, attempt=attempt)
        _collect_batch_garbage()
        if not self.dry_run:  # every source counted here, as its batch commits
            LEADS_INGESTED.labels(source).inc(len(good))
            QUARANTINED.labels(source).inc(len(bad))
        stats = self.stats
        stats.rows += len(resolved) + skipped
        stats.created += plan.created
        stats.updated += plan.updated
        stats.merged += plan.merged
        stats.unchanged += plan.unchanged
        stats.folded += plan.folded
        stats.quarantined += len(bad)
        stats.skipped += skipped
        stats.resolved += closed + fixed
        for record in bad:
            for problem in record.problems:
                stats.reasons[f"{problem.field}: {problem.reason}"] += 1
        for record in good:
            stats.field_issues += len(record.problems)
            for problem in record.problems:
                stats.field_reasons[f"{problem.field}: {problem.reason}"] += 1
        log.info(
            "ingest.batch",
            source=source,
            stream=stream,
            rows=len(resolved),
            created=plan.created,
            updated=plan.updated,
            merged=plan.merged,
            folded=plan.folded,
            quarantined=len(bad),
            newly_quarantined=filed,
            new_field_issues=issued,
            field_issues_resolved=fixed,
        )
        if self.progress:
            self.progress(stats)

    # -- transactions ---------------------------------------------------------------

    @contextmanager
    def _dry_run_scope(self) -> Iterator[None]:
        """In a dry run every batch shares one transaction that is rolled back at the end,
        so later batches see earlier ones and the counts are what a real run would give."""
        if not self.dry_run or self._dry_conn is not None:
            yield
            return
        with self.store.engine.connect() as conn:
            trans = conn.begin()
            self._dry_conn = conn
            try:
                yield
            finally:
                self._dry_conn = None
                trans.rollback()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        if self._dry_conn is not None:
            nested = self._dry_conn.begin_nested()
            try:
                yield self._dry_conn
            except BaseException:
                nested.rollback()
                raise
            nested.commit()
            return
        with self.store.engine.begin() as conn:
            yield conn


_KEEP: Any = object()  # marks a slice that must not move the cursor


def _collect_batch_garbage() -> None:
    """A young collection once a batch is committed. With the first threshold above
    what a batch keeps alive, automatic collections almost never run, but a batch
    leaves a few hundred objects in reference cycles (SQLAlchemy's statement
    constructs; on PostgreSQL those of `bulk.among`, which hold the batch's IN-lists
    as JSON text, ~1 MB a batch): uncollected they grew the 1M PostgreSQL benchmark's
    peak RSS from 224 to 398 MB. Collected here, while they are still young, they cost
    one walk of the objects alive between batches (the read-ahead)."""
    gc.collect(0)


@contextmanager
def _rarer_gc() -> Iterator[None]:
    """Raise the collector's thresholds (never lower them) for the ingest, then restore."""
    before = gc.get_threshold()
    gc.set_threshold(*(max(a, b) for a, b in zip(before, _GC_THRESHOLDS, strict=True)))
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _chain(first: Batch, second: Batch, rest: Iterator[Batch]) -> Iterator[Batch]:
    yield first
    yield second
    yield from rest


def _methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods()


def retry_quarantine(
    store: Store,
    remap: Callable[[dict[str, Any], dict[str, Any], str], Lead | None],
    *,
    default_region: str | None = None,
    source: str | None = None,
) -> IngestStats:
    """Map open quarantined records again (after the admin fixed the mapping) and ingest
    those that now pass; the others keep their row with the new reason and one more
    attempt. `remap` returns None for records whose adapter is not installed."""
    pipeline = Pipeline(store, default_region=default_region, workers=0)
    stats = IngestStats()
    # Field issues are values of contacts already ingested: nothing to map again.
    query = select(quarantine).where(
        quarantine.c.resolved_at.is_(None), quarantine.c.kind == issues.RECORD
    )
    if source:
        query = query.where(quarantine.c.source == source)
    with store.reader.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query.order_by(quarantine.c.id))]
    for row in rows:
        lead = remap(row["raw"], row["context"], row["ref"])
        if lead is None:
            continue
        record = prepare(lead, default_region)
        stats.rows += 1
        now = datetime.now(UTC)
        if not identifies(record):
            with store.engine.begin() as conn:
                conn.execute(
                    update(quarantine)
                    .where(quarantine.c.id == row["id"])
                    .values(
                        field=record.problems[0].field,
                        reason="; ".join(str(p) for p in record.problems),
                        attempts=row["attempts"] + 1,
                    )
                )
            stats.quarantined += 1
            for problem in record.problems:
                stats.reasons[f"{problem.field}: {problem.reason}"] += 1
            continue
        pipeline.stats = IngestStats()
        pipeline.ingest(record.source, [lead])
        with store.engine.begin() as conn:
            conn.execute(
                update(quarantine)
                .where(quarantine.c.id == row["id"])
                .values(resolved_at=now, resolution="retried", attempts=row["attempts"] + 1)
            )
        for name in ("created", "updated", "merged", "unchanged", "folded", "field_issues"):
            setattr(stats, name, getattr(stats, name) + getattr(pipeline.stats, name))
        stats.field_reasons.update(pipeline.stats.field_reasons)
    return stats
