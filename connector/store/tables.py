"""The store's tables (SQLAlchemy Core). Alembic migrations in ./migrations own the DDL;
this module is what queries are written against and must match the newest revision
(tests/contract/test_store.py checks that autogenerate finds no difference)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way out, whatever the backend keeps.

    SQLite has no timezone type and hands back naive datetimes; PostgreSQL's
    timestamptz does. Storing naive UTC on SQLite and aware on PostgreSQL, and always
    returning aware UTC, keeps comparisons in Python correct on both."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("status", Integer, nullable=False),
    Column("status_changed_at", UTCDateTime()),
    Column("email", String(320)),
    Column("phone", String(32)),
    Column("first_name", Text),
    Column("last_name", Text),
    Column("company", Text),
    Column("city", Text),
    Column("state", Text),
    Column("zip", String(32)),
    Column("country", String(2)),
    Column("date_of_birth", String(10)),
    Column("gender", String(1)),
    Column("owner", Text),
    Column("external_id", Text),
    Column("score", Float),
    Column("custom", Json, nullable=False),
    # A merged contact stays as a tombstone so late references land on the survivor.
    Column("merged_into", Integer, ForeignKey("contacts.id")),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # When each attribute's value was observed (ISO UTC text by attribute name,
    # `custom.<name>` for custom ones): an older observation never overwrites a newer
    # one (0004). NULL on older rows: their values count as older than any observation.
    Column("observed", Json),
    # The last change by a person (status, merge by hand): the survivor rule uses it.
    Column("person_changed_at", UTCDateTime()),
    Index(None, "status"),
    # Only tombstones have merged_into, and only they are looked up by it (0003).
    Index(
        None,
        "merged_into",
        sqlite_where=text("merged_into IS NOT NULL"),
        postgresql_where=text("merged_into IS NOT NULL"),
    ),
)

# Every key that identifies a person (email, phone, external id), one row each, unique:
# the unique index is what stops two writers from creating the same person twice.
identities = Table(
    "identities",
    metadata,
    Column("key", Text, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "contact_id"),
    # On SQLite the row lives in the key's B-tree: one B-tree less per identity (0003).
    sqlite_with_rowid=False,
)

leads = Table(
    "leads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(128), nullable=False),
    Column("source_id", String(256), nullable=False),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("payload_hash", String(64), nullable=False),
    Column("ref", Text, nullable=False),
    Column("raw", Json, nullable=False),
    Column("context", Json, nullable=False),
    Column("occurred_at", UTCDateTime()),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("source", "source_id"),
    Index(None, "contact_id"),
)

interactions = Table(
    "interactions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("source", String(128)),
    Column("data", Json, nullable=False),
    Index(None, "contact_id", "occurred_at"),
)

status_history = Table(
    "status_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("from_status", Integer),
    Column("to_status", Integer, nullable=False),
    Column("origin", String(128), nullable=False),
    Column("actor", Text),
    Column("at", UTCDateTime(), nullable=False),
    # The two-way status engine's decisions (0008): the rule that decided, whether the
    # change was accepted (a rejected one leaves the status as it was: to_status is
    # what was proposed), the value that lost, and the origin system's own word.
    Column("rule", String(64)),
    Column("accepted", Boolean, nullable=False, server_default=text("true")),
    Column("losing", Text),
    Column("value", Text),
    Index(None, "contact_id", "at"),
)

# Two contacts a shared key joined whose names clearly disagree (an office phone, an
# info@ address): kept apart and offered to a person, who merges or dismisses them.
# contact_id < other_id, so a pair is one row whichever way it was found (0004).
possible_duplicates = Table(
    "possible_duplicates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("other_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("dismissed_at", UTCDateTime()),
    Column("dismissed_by", Text),
    Column("merged_at", UTCDateTime()),
    UniqueConstraint("contact_id", "other_id"),
)

# Every merge, automatic or by hand, with what came from where (`detail`: attributes
# taken with the survivor's earlier values, identities, leads, interactions, history
# and tombstones moved), so `contacts unmerge` can restore the absorbed contact (0004).
merge_log = Table(
    "merge_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("survivor_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("absorbed_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", Text),
    Column("rule", Text, nullable=False),
    Column("detail", Json, nullable=False),
    Column("undone_at", UTCDateTime()),
    Column("undone_by", Text),
    Index(None, "absorbed_id"),
    Index(None, "survivor_id"),
)

# The catalogue last applied to this store, so a status deleted from the YAML can be
# detected and its contacts moved to Unknown with a history entry.
statuses = Table(
    "statuses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("terminal", Boolean, nullable=False),
)

cursors = Table(
    "cursors",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("stream", String(256), primary_key=True),
    Column("value", Json, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(128), nullable=False),
    Column("ref", Text, nullable=False),
    Column("field", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", Json, nullable=False),
    # What a retry needs to map the record again (adapter kind, mapping file, region).
    Column("context", Json, nullable=False),
    # sha256 of source + raw: re-importing the same bad row does not file it twice.
    Column("fingerprint", String(64), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime()),
    # 'record': a whole record nobody can identify or read; 'field': one value left
    # out of a contact that was ingested (contact_id), so one bad field never loses a
    # person (0003_field_issues).
    Column("kind", String(16), nullable=False, server_default="record"),
    Column("contact_id", Integer, ForeignKey("contacts.id")),
    # How it closed: `reingested` (the same record came in fine later), `retried`
    # (`quarantine retry` ingested it) or `dismissed` (the admin closed it).
    Column("resolution", String(32)),
    # The id the record would have as a lead: a later ingest of it closes this entry.
    Column("source_id", Text),
    UniqueConstraint("source", "fingerprint"),
    Index(None, "contact_id"),
    Index("ix_quarantine_source_source_id", "source", "source_id"),
)

# -- runtime: what the daemon keeps about its own work ---------------------------------

# One row per run of a scheduled job, on any replica: `leadsync status` reads the last
# one per job, and the multi-replica test checks that runs of one job never overlap.
job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(128), nullable=False),
    Column("replica", String(128), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("ok", Boolean),
    Column("message", Text),
    Index(None, "job_id", "started_at"),
)

# The state of each source or connected system as its adapter last reported it:
# `failing` with a reason a person can act on (renew the token), `paused` until a
# throttle window ends, or `ok`.
source_health = Table(
    "source_health",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("paused_until", UTCDateTime()),
    Column("last_success_at", UTCDateTime()),
    Column("detail", Json, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Webhook bodies as received (signature already verified), persisted before the 2xx so
# that the work is never lost and the answer is fast. A drain job claims them with a
# lease (claimed_until), processes them and sets processed_at.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(128), nullable=False),
    Column("body", Text, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("claimed_until", UTCDateTime()),
    Column("processed_at", UTCDateTime()),
    Column("attempts", Integer, nullable=False),
    Column("error", Text),
    # Set when the delivery failed `server.webhook_attempts` times: no longer claimed.
    Column("dead_at", UTCDateTime()),
    Index(None, "source", "processed_at"),
)

# Every outbound effect (a status push, an audience change, a conversion event), written
# in the same transaction as the change that causes it (connector.sync.outbox.enqueue)
# and delivered by the outbox job under a lease (claimed_until, claimed_by). A row is
# pending until delivered_at or dead_at is set; dead letters keep their last_error until
# a person retries or dismisses them (0007).
_PENDING = text("delivered_at IS NULL AND dead_at IS NULL")
_LEASED = text("delivered_at IS NULL AND dead_at IS NULL AND claimed_until IS NOT NULL")
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("destination", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("key", String(256), nullable=False),
    Column("contact_id", Integer, ForeignKey("contacts.id")),
    Column("payload", Json, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("available_at", UTCDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("claimed_until", UTCDateTime()),
    Column("claimed_by", String(128)),
    Column("last_error", Text),
    Column("delivered_at", UTCDateTime()),
    Column("dead_at", UTCDateTime()),
    Column("dismissed_at", UTCDateTime()),
    # One undelivered row per effect: the same (destination, key) enqueued again while
    # one waits is that one; once it is delivered (or dead) a new one may be written
    # (Won -> Lost -> Won pushes Won twice).
    Index(
        "uq_outbox_pending_key",
        "destination",
        "key",
        unique=True,
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    ),
    # The claim: due rows of a destination in id order, and for each the check that no
    # earlier row of its contact still waits (per-contact order).
    Index(
        "ix_outbox_pending_id",
        "destination",
        "id",
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    ),
    # Rows under a lease (in flight, or left by a claimer that died): few, and probed on
    # every claim for attempts that left no result.
    Index(
        "ix_outbox_leased_id",
        "destination",
        "id",
        sqlite_where=_LEASED,
        postgresql_where=_LEASED,
    ),
    Index(
        "ix_outbox_pending_contact",
        "destination",
        "contact_id",
        "id",
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    ),
)

# -- two-way status sync: system_links (connector.sync.links) -------------------------

# (system, external id) <-> contact: which record of a two-way system (a HubSpot contact)
# is which of our contacts, with the last value seen there (and the system's timestamp
# for it) and the last value we wrote, which the engine's echo check compares with
# (0008). Re-keyed by merges and unmerges like the contact's other rows.
system_links = Table(
    "system_links",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("system", String(128), nullable=False),
    Column("external_id", String(256), nullable=False),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("last_seen_value", Text),
    Column("last_seen_at", UTCDateTime()),
    Column("last_written_value", Text),
    Column("last_written_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("system", "external_id"),
    Index(None, "contact_id"),
)
