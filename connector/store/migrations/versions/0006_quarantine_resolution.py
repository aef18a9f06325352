"""quarantine resolution: how an entry was closed, and the record's source id

An entry closes by itself when the same record is ingested later (matched by source and
source id, else by fingerprint), when a retry ingests it, or when the admin dismisses
it; `resolution` says which (`reingested`, `retried`, `dismissed`). `source_id` is the
id the record would have had as a lead, indexed with the source for that match.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-01 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("quarantine", sa.Column("resolution", sa.String(length=32), nullable=True))
    op.add_column("quarantine", sa.Column("source_id", sa.Text(), nullable=True))
    op.create_index("ix_quarantine_source_source_id", "quarantine", ["source", "source_id"])
    # Entries closed before this revision were closed by a retry (the only way then).
    op.execute(
        "UPDATE quarantine SET resolution = 'retried' "
        "WHERE resolved_at IS NOT NULL AND resolution IS NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_quarantine_source_source_id", table_name="quarantine")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("source_id")
        batch.drop_column("resolution")
