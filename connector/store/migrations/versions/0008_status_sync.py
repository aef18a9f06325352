"""two-way status sync: system_links, decisions in status_history

- `system_links`: (system, external id) <-> contact, with the last value seen in the
  system (and its timestamp) and the last value written to it (the echo check).
- `status_history.rule`, `.accepted`, `.losing`, `.value`: every decision of the status
  engine, accepted or rejected, with the rule that decided, the value that lost and the
  origin system's own word. Older rows are accepted changes with no rule.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from connector.store.tables import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = UTCDateTime()


def upgrade() -> None:
    with op.batch_alter_table("status_history") as batch:
        batch.add_column(sa.Column("rule", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("accepted", sa.Boolean(), nullable=False, server_default=sa.text("true"))
        )
        batch.add_column(sa.Column("losing", sa.Text(), nullable=True))
        batch.add_column(sa.Column("value", sa.Text(), nullable=True))
    op.create_table(
        "system_links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("system", sa.String(length=128), nullable=False),
        sa.Column("external_id", sa.String(length=256), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("last_seen_value", sa.Text(), nullable=True),
        sa.Column("last_seen_at", TS, nullable=True),
        sa.Column("last_written_value", sa.Text(), nullable=True),
        sa.Column("last_written_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_system_links_contact_id_contacts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_links")),
        sa.UniqueConstraint(
            "system", "external_id", name=op.f("uq_system_links_system_external_id")
        ),
    )
    op.create_index(op.f("ix_system_links_contact_id"), "system_links", ["contact_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_system_links_contact_id"), table_name="system_links")
    op.drop_table("system_links")
    with op.batch_alter_table("status_history") as batch:
        batch.drop_column("value")
        batch.drop_column("losing")
        batch.drop_column("accepted")
        batch.drop_column("rule")
