"""leaner indexes: identities without a rowid on SQLite, merged_into indexed only when set

Every ingested person writes one contact row and ~1.8 identity rows, so each index
those tables carry is paid on every lead:
- `contacts.merged_into` is NULL for every live contact; a partial index (WHERE
  merged_into IS NOT NULL) holds only tombstones, which is all the lookups
  (`merged_into = :id`) ever ask for, and both SQLite and PostgreSQL use it for them.
- On SQLite, `identities` (a TEXT primary key) was a rowid table plus a separate unique
  index on the key: two B-trees per identity. WITHOUT ROWID stores the row in the key's
  B-tree. PostgreSQL keeps its heap and primary-key index as they were.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_NULL = sa.text("merged_into IS NOT NULL")


def _identities(with_rowid: bool) -> None:
    suffix = "" if with_rowid else " WITHOUT ROWID"
    op.execute(
        "CREATE TABLE identities_new ("
        "key TEXT NOT NULL, kind VARCHAR(32) NOT NULL, contact_id INTEGER NOT NULL, "
        "created_at DATETIME NOT NULL, "
        "CONSTRAINT pk_identities PRIMARY KEY (key), "
        "CONSTRAINT fk_identities_contact_id_contacts "
        f"FOREIGN KEY(contact_id) REFERENCES contacts (id)){suffix}"
    )
    op.execute(
        "INSERT INTO identities_new (key, kind, contact_id, created_at) "
        "SELECT key, kind, contact_id, created_at FROM identities"
    )
    op.execute("DROP TABLE identities")
    op.execute("ALTER TABLE identities_new RENAME TO identities")
    op.execute("CREATE INDEX ix_identities_contact_id ON identities (contact_id)")


def upgrade() -> None:
    op.drop_index("ix_contacts_merged_into", table_name="contacts")
    op.create_index(
        "ix_contacts_merged_into",
        "contacts",
        ["merged_into"],
        sqlite_where=_NOT_NULL,
        postgresql_where=_NOT_NULL,
    )
    if op.get_bind().dialect.name == "sqlite":
        _identities(with_rowid=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _identities(with_rowid=True)
    op.drop_index("ix_contacts_merged_into", table_name="contacts")
    op.create_index("ix_contacts_merged_into", "contacts", ["merged_into"])
