"""segment indexes: views sorted and counted by status and score, leads by source

Chosen from EXPLAIN of the view `status >= Qualified and source = facebook and score >=
70` sorted `-score` over 1,000,000 contacts (BENCHMARKS.md, "Segments"):
- `(score NULLS FIRST) WHERE merged_into IS NULL`: a page sorted by score reads the index from the
  top and stops after a page of matches (SQLite: 886 ms -> 5 ms for the first page).
- `(status, score) WHERE merged_into IS NULL`: a count by status and score range reads
  one index range per status instead of every contact of those statuses.
- leads `(contact_id, source)` replaces `(contact_id)`: the same lookups by contact, and
  "has a lead from source X" is answered from the index alone.
Both contacts indexes are partial on live contacts, as every segment query is.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
# 0008 is another branch of this wave; the lead re-chains revisions when merging.
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text("merged_into IS NULL")


def upgrade() -> None:
    # Missing scores sort lowest on both stores: NULLS FIRST is SQLite's only order (it
    # has no NULLS clause in an index), and PostgreSQL reads the index backwards for
    # `-score`, nulls last.
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_index(
        "ix_contacts_live_score",
        "contacts",
        [sa.text("score NULLS FIRST") if postgres else "score"],
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )
    op.create_index(
        "ix_contacts_live_status_score",
        "contacts",
        ["status", "score"],
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )
    op.create_index("ix_leads_contact_id_source", "leads", ["contact_id", "source"])
    op.drop_index("ix_leads_contact_id", table_name="leads")


def downgrade() -> None:
    op.create_index("ix_leads_contact_id", "leads", ["contact_id"])
    op.drop_index("ix_leads_contact_id_source", table_name="leads")
    op.drop_index("ix_contacts_live_status_score", table_name="contacts")
    op.drop_index("ix_contacts_live_score", table_name="contacts")
