"""What `leadsync status` shows, as plain data (the --json output)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from connector.runtime import health, inbox
from connector.store import Store
from connector.store.tables import cursors, job_runs, quarantine


def last_runs(store: Store) -> list[dict[str, Any]]:
    """The newest job_runs row of every job."""
    t = job_runs
    newest = select(t.c.job_id, func.max(t.c.id).label("id")).group_by(t.c.job_id).subquery()
    query = (
        select(t.c.job_id, t.c.replica, t.c.started_at, t.c.finished_at, t.c.ok, t.c.message)
        .join(newest, newest.c.id == t.c.id)
        .order_by(t.c.job_id)
    )
    with store.reader.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def collect(store: Store, now: datetime) -> dict[str, Any]:
    from connector.sync import outbox

    with store.reader.connect() as conn:
        cursor_rows = [
            {
                **dict(r._mapping),
                "lag_seconds": max(0.0, (now - r.updated_at).total_seconds()),
            }
            for r in conn.execute(select(cursors).order_by(cursors.c.source, cursors.c.stream))
        ]
        # Whole records and single values left out of a contact, counted apart.
        open_by_kind: dict[str, int] = dict(
            conn.execute(
                select(quarantine.c.kind, func.count())
                .where(quarantine.c.resolved_at.is_(None))
                .group_by(quarantine.c.kind)
            ).all()
        )
    return {
        "sources": [
            {k: r[k] for k in ("source", "state", "reason", "paused_until", "last_success_at")}
            for r in health.read(store)
        ],
        "jobs": last_runs(store),
        "cursors": cursor_rows,
        "outbox": outbox.depth(store, now),
        "quarantine_open": int(open_by_kind.get("record", 0)),
        "field_issues_open": int(open_by_kind.get("field", 0)),
        "webhooks_pending": inbox.pending(store),
        "webhooks_dead": inbox.dead_letters(store),
    }
