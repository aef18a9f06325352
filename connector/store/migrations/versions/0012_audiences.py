"""audiences: what was last sent to each custom audience, and each batch's answer

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from connector.store.tables import Json, UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audience_members",
        sa.Column("audience", sa.String(256), primary_key=True),
        sa.Column("contact_id", sa.Integer, primary_key=True),
        sa.Column("row", Json, nullable=False),
        sa.Column("key_hash", sa.String(32), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "audience_pushes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("audience", sa.String(256), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("received", sa.Integer),
        sa.Column("invalid", sa.Integer),
        sa.Column("samples", Json, nullable=False),
    )
    op.create_index("ix_audience_pushes_audience", "audience_pushes", ["audience", "id"])


def downgrade() -> None:
    op.drop_table("audience_pushes")
    op.drop_table("audience_members")
