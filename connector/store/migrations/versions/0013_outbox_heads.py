"""outbox heads: the claim reads the head of each (destination, contact) only

- `outbox.head`: true on the lowest pending row of its (destination, contact) and on
  every pending row without a contact. Kept by connector.sync.outbox (enqueue sets it on
  a row nothing pending precedes; whatever ends a pending row sets it on the next one).
- `ix_outbox_heads_due` (destination, available_at, id) on pending heads: the claim walks
  it in the order rows fall due and stops after a batch. Before, the claim walked every
  pending row of the destination in id order and checked each against its contact's
  earlier rows, so its cost grew with the backlog (rows waiting behind their contact,
  rows backing off) and, on a table without statistics, with a bad plan.

- `ix_outbox_pending_contact` (destination, contact_id, id) again, on pending rows
  spelled `coalesce(delivered_at, dead_at) IS NULL`: the per-contact probe (a contact's
  first pending row) says pending that way, so no other index's predicate follows from
  it and the planner cannot probe through one of them. On a table without statistics
  it did: through (destination, key), every pending row of the destination per
  candidate (a 100,000-row claim stalled for minutes).

Existing pending rows get their flag here, by the same rule.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HEADS_PG = sa.text("delivered_at IS NULL AND dead_at IS NULL AND head")
_HEADS_SQLITE = sa.text("delivered_at IS NULL AND dead_at IS NULL AND head = 1")
_PENDING = sa.text("delivered_at IS NULL AND dead_at IS NULL")
_PENDING_PROBE = sa.text("coalesce(delivered_at, dead_at) IS NULL")


def _contact_index(where: sa.TextClause) -> None:
    op.create_index(
        "ix_outbox_pending_contact",
        "outbox",
        ["destination", "contact_id", "id"],
        sqlite_where=where,
        postgresql_where=where,
    )


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column("head", sa.Boolean(), nullable=False, server_default=sa.text("false"))
        )
    op.execute(
        """
        UPDATE outbox SET head = true
        WHERE delivered_at IS NULL AND dead_at IS NULL
          AND (contact_id IS NULL OR id = (
                SELECT min(e.id) FROM outbox e
                WHERE e.destination = outbox.destination AND e.contact_id = outbox.contact_id
                  AND e.delivered_at IS NULL AND e.dead_at IS NULL))
        """
    )
    op.drop_index("ix_outbox_pending_contact", table_name="outbox")
    _contact_index(_PENDING_PROBE)
    op.create_index(
        "ix_outbox_heads_due",
        "outbox",
        ["destination", "available_at", "id"],
        sqlite_where=_HEADS_SQLITE,
        postgresql_where=_HEADS_PG,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_heads_due", table_name="outbox")
    op.drop_index("ix_outbox_pending_contact", table_name="outbox")
    _contact_index(_PENDING)
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("head")
