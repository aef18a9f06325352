"""What each source and system last reported about itself, for `leadsync status`.

Adapters report through `Runtime.report`; commands that run outside the daemon (a
backfill) use `report` directly. A failing source says what a person should do
("renew the page token"), never a stack trace."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update

from connector.ports import Health
from connector.store import Store
from connector.store.tables import source_health


def report(
    store: Store,
    source: str,
    state: Health,
    reason: str | None = None,
    *,
    until: datetime | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Upsert the health row of `source`; `ok` also stamps last_success_at."""
    now = now or datetime.now(UTC)
    values: dict[str, Any] = {
        "state": state,
        "reason": reason,
        "paused_until": until,
        "updated_at": now,
    }
    if detail is not None:
        values["detail"] = detail
    if state == "ok":
        values["last_success_at"] = now
    t = source_health
    with store.engine.begin() as conn:
        changed = conn.execute(update(t).where(t.c.source == source).values(**values))
        if changed.rowcount == 0:
            values.setdefault("detail", {})
            conn.execute(insert(t).values(source=source, **values))


def read(store: Store) -> list[dict[str, Any]]:
    """Every source's health row, by name."""
    with store.reader.connect() as conn:
        rows = conn.execute(select(source_health).order_by(source_health.c.source))
        return [dict(r._mapping) for r in rows]
