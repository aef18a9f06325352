"""recency and merges: per-attribute observed times, possible duplicates, merge log

- `contacts.observed`: when each attribute's value was observed (ISO UTC text by
  attribute name, `custom.<name>` for custom ones), so an older observation never
  overwrites a newer one whatever order records arrive in. NULL on rows written before
  this revision: their values count as older than any observation.
- `contacts.person_changed_at`: the last time a person changed the contact (status,
  merge by hand); the survivor rule of automatic merges prefers it.
- `possible_duplicates`: two contacts a shared key joined but whose names clearly
  disagree (an office phone, an info@ address), kept apart for a person to decide.
- `merge_log`: every merge with what came from where, so it can be undone.

Revision ID: 0004
Revises: 0003 (the existing head, leaner indexes)
Create Date: 2026-12-01 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
revision: str = "0004"
down_revision: str | None = "0003_field_issues"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("observed", JSON, nullable=True))
        batch.add_column(sa.Column("person_changed_at", TS, nullable=True))
    op.create_table(
        "possible_duplicates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("other_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("dismissed_at", TS, nullable=True),
        sa.Column("dismissed_by", sa.Text(), nullable=True),
        sa.Column("merged_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_possible_duplicates_contact_id_contacts")
        ),
        sa.ForeignKeyConstraint(
            ["other_id"], ["contacts.id"], name=op.f("fk_possible_duplicates_other_id_contacts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_possible_duplicates")),
        sa.UniqueConstraint(
            "contact_id", "other_id", name=op.f("uq_possible_duplicates_contact_id_other_id")
        ),
    )
    op.create_table(
        "merge_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("survivor_id", sa.Integer(), nullable=False),
        sa.Column("absorbed_id", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("undone_at", TS, nullable=True),
        sa.Column("undone_by", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["survivor_id"], ["contacts.id"], name=op.f("fk_merge_log_survivor_id_contacts")
        ),
        sa.ForeignKeyConstraint(
            ["absorbed_id"], ["contacts.id"], name=op.f("fk_merge_log_absorbed_id_contacts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merge_log")),
    )
    op.create_index(op.f("ix_merge_log_absorbed_id"), "merge_log", ["absorbed_id"])
    op.create_index(op.f("ix_merge_log_survivor_id"), "merge_log", ["survivor_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_merge_log_survivor_id"), table_name="merge_log")
    op.drop_index(op.f("ix_merge_log_absorbed_id"), table_name="merge_log")
    op.drop_table("merge_log")
    op.drop_table("possible_duplicates")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("person_changed_at")
        batch.drop_column("observed")
