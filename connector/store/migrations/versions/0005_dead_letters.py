"""dead letters: webhook deliveries that failed too often stop being claimed

A delivery whose processing keeps failing (a lead the Graph refuses, a record the store
cannot take) used to be claimed again forever, with everything pending beside it. After
`server.webhook_attempts` failures it is set aside with `dead_at` and its last error,
listed by `leadsync status` and counted in /metrics.

Revision ID: 0005
Revises: 0003 (the tree's head when written; the brief's 0002 would make two heads here)
Create Date: 2026-12-01 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("dead_at")
