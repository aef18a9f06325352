"""field issues: one bad value of a person kept beside the contact, not a lost person

A quarantine row is now either a whole record nobody can identify or read (`kind`
'record', as before) or one field left out of a contact that was ingested (`kind`
'field'), which points at that contact (`contact_id`) so `contacts show` can list it.

Revision ID: 0003_field_issues
Revises: 0003
Create Date: 2026-12-01 10:30:00

The brief asked for revision id "0003" after "0002", but this branch already has a
"0003" (leaner indexes) as its head; a second "0003" would make Alembic's history
ambiguous, so this one has its own id and follows the real head. The lead re-chains
revisions when merging.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_field_issues"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a foreign key to an existing table in place.
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="record"))
        batch.add_column(sa.Column("contact_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_quarantine_contact_id_contacts", "contacts", ["contact_id"], ["id"]
        )
        batch.create_index("ix_quarantine_contact_id", ["contact_id"])


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_index("ix_quarantine_contact_id")
        batch.drop_constraint("fk_quarantine_contact_id_contacts", type_="foreignkey")
        batch.drop_column("contact_id")
        batch.drop_column("kind")
