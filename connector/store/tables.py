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
    # Segments (0009): pages sorted by score, counts by status and score, live only.
    # NULLS FIRST: a missing score sorts lowest on both stores (SQLite's only order), and
    # PostgreSQL reads it backwards for `-score`, nulls last. An expression, as
    # PostgreSQL reflects it; SQLite's DDL (plain `score`) is 0009's.
    Index(
        "ix_contacts_live_score",
        Column("score", Float).nulls_first(),
        sqlite_where=text("merged_into IS NULL"),
        postgresql_where=text("merged_into IS NULL"),
    ),
    Index(
        "ix_contacts_live_status_score",
        "status",
        "score",
        sqlite_where=text("merged_into IS NULL"),
        postgresql_where=text("merged_into IS NULL"),
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
    # By contact, and "has a lead from source X" from the index alone (0009).
    Index(None, "contact_id", "source"),
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
    # Probed by source id and by fingerprint alone (0011_quarantine_probes).
    Index(None, "source_id"),
    Index(None, "fingerprint"),
    # The open record entries of a source: what every batch asks first (tiny: entries
    # close when their record comes in fine, or the admin dismisses them).
    Index(
        "ix_quarantine_open_records",
        "source",
        postgresql_where=text("kind = 'record' AND resolved_at IS NULL"),
        sqlite_where=text("kind = 'record' AND resolved_at IS NULL"),
    ),
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
# Pending rows that head their (destination, contact): what the claim scans (0013). The
# two spellings are what each dialect renders for `head` in a query, so that SQLite
# (which matches a partial index's terms literally) uses the index too.
_HEADS_PG = text("delivered_at IS NULL AND dead_at IS NULL AND head")
_HEADS_SQLITE = text("delivered_at IS NULL AND dead_at IS NULL AND head = 1")
# "Pending" spelled so that no other index's predicate follows from it (PostgreSQL does
# not reason through coalesce): the per-contact probes can use no index but theirs.
_PENDING_PROBE = text("coalesce(delivered_at, dead_at) IS NULL")
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
    # True on the lowest pending row of its (destination, contact) and on every pending
    # row without a contact (unordered), maintained by enqueue and by whatever ends a
    # pending row (connector.sync.outbox): the claim reads heads only, so its cost is
    # the batch's, not the backlog's (0013).
    Column("head", Boolean, nullable=False, server_default=text("false")),
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
    # The per-contact probes: a contact's first pending row (the claim's order check,
    # enqueue, record). Its predicate is spelled apart (0013): on a table without
    # statistics PostgreSQL, seeing near-equal costs, probed through (destination, key)
    # instead, reading every pending row of the destination per candidate.
    Index(
        "ix_outbox_pending_contact",
        "destination",
        "contact_id",
        "id",
        sqlite_where=_PENDING_PROBE,
        postgresql_where=_PENDING_PROBE,
    ),
    # The claim: heads of a destination in the order they fall due. Rows backing off sort
    # after `now` and rows waiting behind their contact's head are not in it, so a claim
    # reads about `batch` entries whatever the backlog.
    Index(
        "ix_outbox_heads_due",
        "destination",
        "available_at",
        "id",
        sqlite_where=_HEADS_SQLITE,
        postgresql_where=_HEADS_PG,
    ),
)

# -- custom audiences: what was last sent to each audience (adapters/facebook/audiences) --

audience_members = Table(
    "audience_members",
    metadata,
    Column("audience", String(256), primary_key=True),
    Column("contact_id", Integer, primary_key=True),
    # The hashed match keys as sent, in the audience's key order: a removal sends the
    # same values, so a contact whose email changed is removed by its old hashes.
    Column("row", Json, nullable=False),
    Column("key_hash", String(32), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=False),
)

audience_pushes = Table(
    "audience_pushes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("audience", String(256), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("op", String(16), nullable=False),  # add, remove, replace
    Column("rows", Integer, nullable=False),
    # What the ad platform answered for the batch: received, invalid, samples of why.
    Column("received", Integer),
    Column("invalid", Integer),
    Column("samples", Json, nullable=False),
    Index("ix_audience_pushes_audience", "audience", "id"),
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

# -- web tag: visitors of the company's site and their page views (0010) ---------------

# JSON that can be SQL NULL, so `coalesce(new, old)` keeps the last value seen.
NullableJson = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# A browser the web tag saw, by its first-party visitor id on one site. `contact_id` is
# set once the visitor identifies (a form, an `identify` call); visitors who never do
# stay anonymous and are deleted after `webtag.anonymous_retention_days`. fbc/fbp are
# the latest Meta click and browser ids seen (they change across sessions: the latest
# is the one to send).
web_visitors = Table(
    "web_visitors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("visitor", String(64), nullable=False),
    Column("contact_id", Integer, ForeignKey("contacts.id")),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("identified_at", UTCDateTime()),
    Column("fbc", Text),
    Column("fbp", Text),
    # The UTM parameters of the latest visit that carried any (last touch).
    Column("utm", NullableJson),
    UniqueConstraint("site", "visitor"),
    Index(None, "contact_id"),
    Index(None, "last_seen"),
)

# Every page view, keyed by the event id the snippet gave it, so a retried batch is
# stored once. A page view of an identified visitor is also an interaction of its
# contact (kind `page_view`); earlier anonymous ones become interactions when the
# visitor identifies (`contact_id` is then set here too).
web_page_views = Table(
    "web_page_views",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("visitor_id", Integer, ForeignKey("web_visitors.id"), nullable=False),
    Column("contact_id", Integer, ForeignKey("contacts.id")),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("url", Text, nullable=False),
    Column("referrer", Text),
    Column("title", Text),
    Column("utm", NullableJson),
    Column("fbc", Text),
    UniqueConstraint("site", "event_id"),
    Index(None, "visitor_id"),
)
