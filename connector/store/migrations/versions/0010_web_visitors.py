"""web visitors: the web tag's visitors and their page views

`web_visitors`: a browser by its first-party visitor id on one site, linked to a
contact once it identifies; `web_page_views`: each page view, unique by (site, event
id) so a retried batch is stored once.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from connector.store.tables import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = UTCDateTime()
JSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)


def upgrade() -> None:
    op.create_table(
        "web_visitors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("visitor", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("identified_at", TS, nullable=True),
        sa.Column("fbc", sa.Text(), nullable=True),
        sa.Column("fbp", sa.Text(), nullable=True),
        sa.Column("utm", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_web_visitors_contact_id_contacts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_visitors")),
        sa.UniqueConstraint("site", "visitor", name=op.f("uq_web_visitors_site_visitor")),
    )
    with op.batch_alter_table("web_visitors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_visitors_contact_id"), ["contact_id"])
        batch_op.create_index(batch_op.f("ix_web_visitors_last_seen"), ["last_seen"])
    op.create_table(
        "web_page_views",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("visitor_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("referrer", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("utm", JSON, nullable=True),
        sa.Column("fbc", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_web_page_views_contact_id_contacts")
        ),
        sa.ForeignKeyConstraint(
            ["visitor_id"],
            ["web_visitors.id"],
            name=op.f("fk_web_page_views_visitor_id_web_visitors"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_page_views")),
        sa.UniqueConstraint("site", "event_id", name=op.f("uq_web_page_views_site_event_id")),
    )
    with op.batch_alter_table("web_page_views", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_page_views_visitor_id"), ["visitor_id"])


def downgrade() -> None:
    with op.batch_alter_table("web_page_views", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_page_views_visitor_id"))
    op.drop_table("web_page_views")
    with op.batch_alter_table("web_visitors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_visitors_last_seen"))
        batch_op.drop_index(batch_op.f("ix_web_visitors_contact_id"))
    op.drop_table("web_visitors")
