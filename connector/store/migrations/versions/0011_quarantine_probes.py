"""quarantine probes: index the columns a batch looks entries up by, on their own

Every batch looks quarantine entries up by a list of source ids, fingerprints or
contacts. Indexed behind `source`, a lookup by source id let PostgreSQL's generic plan
(and any plan without statistics) scan the source's rows with the whole list as a
filter: rows x batch comparisons, which grew with the table (PostgreSQL at 1M records:
145 of 283 s). Each probed column now has an index of its own, and the probes name
only that column (store/bulk.py `probe`). A partial index on the open record entries
answers the question every batch asks first: has this source any?

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN_RECORD = "kind = 'record' AND resolved_at IS NULL"


def upgrade() -> None:
    op.drop_index("ix_quarantine_source_source_id", table_name="quarantine")
    op.create_index("ix_quarantine_source_id", "quarantine", ["source_id"])
    op.create_index("ix_quarantine_fingerprint", "quarantine", ["fingerprint"])
    # Whether a source has open record entries: asked by every batch.
    op.create_index(
        "ix_quarantine_open_records",
        "quarantine",
        ["source"],
        postgresql_where=sa.text(_OPEN_RECORD),
        sqlite_where=sa.text(_OPEN_RECORD),
    )


def downgrade() -> None:
    op.drop_index("ix_quarantine_open_records", table_name="quarantine")
    op.drop_index("ix_quarantine_fingerprint", table_name="quarantine")
    op.drop_index("ix_quarantine_source_id", table_name="quarantine")
    op.create_index("ix_quarantine_source_source_id", "quarantine", ["source", "source_id"])
