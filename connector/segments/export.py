"""Writing a segment out: CSV or JSON lines, row by row as the store streams them, and
the Meta match-key form (`--hashed`) for a manual audience upload. Also the filtered
timeline of one contact (`contacts show ID --kind ...`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from connector import normalize
from connector.segments.query import Segment, stream
from connector.store.engine import Store

# The contact fields Meta's match keys are made from (normalize.match_keys).
MATCH_FIELDS = ("email", "phone", "first_name", "last_name", "city", "state", "zip",
                "country", "date_of_birth", "gender", "external_id")  # fmt: skip


# The columns of a hashed export: Meta's match key names.
HASHED = normalize.MATCH_KEY_NAMES


def write(rows: Iterable[list[Any]], header: Sequence[str], fmt: str, fh: IO[str]) -> int:
    """Write `rows` (values in `header` order) to `fh` as csv (with a header line) or
    jsonl; how many were written."""
    written = 0
    if fmt == "csv":
        writer = csv.writer(fh)
        writer.writerow(header)
        # csv writes None as an empty cell; only custom attributes can be lists or
        # objects, which are written as JSON.
        nested = [i for i, c in enumerate(header) if c.startswith("custom.")]
        for row in rows:
            for i in nested:
                row[i] = _cell(row[i])
            writer.writerow(row)
            written += 1
        return written
    names = list(header)
    for row in rows:
        fh.write(json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False, default=str))
        fh.write("\n")
        written += 1
    return written


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def hashed_rows(
    store: Store, segment: Segment, sort: Sequence[tuple[str, bool]] = ()
) -> Iterator[list[str | None]]:
    """Each contact's Meta match keys as SHA-256 hex (normalised as the core normalises
    them for the ad platform), by key name (EMAIL, PHONE, FN, ...). Raw values never
    leave this function."""
    for row in stream(store, segment, sort, MATCH_FIELDS, raw=True):
        keys, _ = normalize.match_keys(row)
        yield [keys[name]["sha256"] if name in keys else None for name in HASHED]


def timeline(data: dict[str, Any], kinds: set[str]) -> list[dict[str, Any]]:
    """A shown contact's timeline of the given kinds, in time order: interactions by
    their own kind, `status` for status changes, `form` for leads that came in."""
    items: list[dict[str, Any]] = []
    for i in data.get("interactions", []):
        if i["kind"] in kinds:
            what = json.dumps(i["data"], ensure_ascii=False) if i["data"] else ""
            items.append({"at": i["at"], "kind": i["kind"], "what": what})
    if "status" in kinds:
        for h in data.get("status_history", []):
            by = f" by {h['actor']}" if h["actor"] else ""
            what = f"{h['from'] or '-'} -> {h['to']} ({h['origin']}{by})"
            items.append({"at": h["at"], "kind": "status", "what": what})
    if "form" in kinds:
        for lead in data.get("leads", []):
            context = lead.get("context") or {}
            form = context.get("form_name") or context.get("form_id") or ""
            what = " ".join(p for p in (lead["source"], lead["ref"], str(form)) if p)
            items.append(
                {"at": lead["occurred_at"] or lead["received_at"], "kind": "form", "what": what}
            )
    return sorted(items, key=lambda item: item["at"] or "")
