"""outbox v2: leases, dead letters, uniqueness only among undelivered rows

- `claimed_until`/`claimed_by`: a claim is a lease written in a short transaction of its
  own; nothing is locked while a destination is called.
- `dead_at`/`dismissed_at`: a row that failed for good or ran out of attempts is a dead
  letter (it kept `available_at` = 9999-01-01 and a "failed: " error before); a person
  retries or dismisses it.
- (destination, key) is unique only among pending rows (a partial unique index on both
  stores), so an effect delivered once can be enqueued again.
- Partial indexes on pending rows for the claim (due rows by id, the per-contact order
  check) and on leased rows (the probe for attempts that left no result).

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-01 10:30:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy import and_, exists, or_

from connector.store.tables import UTCDateTime

revision: str = "0007"
# The brief names "0002"; this branch's head is already 0003 (leaner indexes), and two
# heads would stop `upgrade head`. The lead re-chains revisions when merging.
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = UTCDateTime()
_PENDING = sa.text("delivered_at IS NULL AND dead_at IS NULL")
_LEASED = sa.text("delivered_at IS NULL AND dead_at IS NULL AND claimed_until IS NOT NULL")
_FAILED_AT = datetime(9999, 1, 1, tzinfo=UTC)
# What the first version wrote for a failed row was 9999-01-01; compare with a margin
# (SQLite compares the stored text, with or without its microseconds).
_FAILED_SINCE = datetime(9000, 1, 1, tzinfo=UTC)


def _pending_index(
    name: str, columns: list[str], unique: bool = False, where: sa.TextClause = _PENDING
) -> None:
    op.create_index(
        name, "outbox", columns, unique=unique, sqlite_where=where, postgresql_where=where
    )


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claimed_until", TS, nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("dead_at", TS, nullable=True))
        batch.add_column(sa.Column("dismissed_at", TS, nullable=True))
        batch.drop_constraint("uq_outbox_destination_key", type_="unique")
        batch.drop_index("ix_outbox_delivered_at_available_at")
    # Rows the first version failed for good become dead letters with the same error.
    outbox = sa.table(
        "outbox",
        sa.column("available_at", TS),
        sa.column("created_at", TS),
        sa.column("delivered_at", TS),
        sa.column("dead_at", TS),
    )
    op.get_bind().execute(
        outbox.update()
        .where(outbox.c.delivered_at.is_(None), outbox.c.available_at >= _FAILED_SINCE)
        .values(dead_at=datetime.now(UTC), available_at=outbox.c.created_at)
    )
    _pending_index("uq_outbox_pending_key", ["destination", "key"], unique=True)
    _pending_index("ix_outbox_pending_id", ["destination", "id"])
    _pending_index("ix_outbox_pending_contact", ["destination", "contact_id", "id"])
    _pending_index("ix_outbox_leased_id", ["destination", "id"], where=_LEASED)


def downgrade() -> None:
    op.drop_index("ix_outbox_leased_id", table_name="outbox")
    op.drop_index("ix_outbox_pending_contact", table_name="outbox")
    op.drop_index("ix_outbox_pending_id", table_name="outbox")
    op.drop_index("uq_outbox_pending_key", table_name="outbox")
    outbox = sa.table(
        "outbox",
        sa.column("id", sa.Integer),
        sa.column("destination", sa.String),
        sa.column("key", sa.String),
        sa.column("available_at", TS),
        sa.column("delivered_at", TS),
        sa.column("dead_at", TS),
    )
    bind = op.get_bind()
    # The first version kept one row per (destination, key): a pending row stays, and
    # of the delivered or dead ones only the newest is kept when no row is pending.
    other = outbox.alias("other")
    same_key = and_(other.c.destination == outbox.c.destination, other.c.key == outbox.c.key)
    done = or_(outbox.c.delivered_at.is_not(None), outbox.c.dead_at.is_not(None))
    bind.execute(
        outbox.delete().where(
            done,
            exists().where(
                same_key,
                or_(
                    and_(other.c.delivered_at.is_(None), other.c.dead_at.is_(None)),
                    other.c.id > outbox.c.id,
                ),
            ),
        )
    )
    bind.execute(
        outbox.update()
        .where(outbox.c.delivered_at.is_(None), outbox.c.dead_at.is_not(None))
        .values(available_at=_FAILED_AT)
    )
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("dismissed_at")
        batch.drop_column("dead_at")
        batch.drop_column("claimed_by")
        batch.drop_column("claimed_until")
        batch.create_unique_constraint("uq_outbox_destination_key", ["destination", "key"])
        batch.create_index("ix_outbox_delivered_at_available_at", ["delivered_at", "available_at"])
