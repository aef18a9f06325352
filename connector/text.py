"""Text a store cannot hold, cleaned the same way for every store.

PostgreSQL refuses the NUL character in `text` (`\\x00`) and in `jsonb` (`\\u0000`);
SQLite takes both. A NUL is never meaningful in a lead (it comes from a broken export,
a C string copied whole, or someone probing), so it is removed everywhere, on both
stores alike: the same file gives the same contacts wherever it is imported, and one
such value never fails the batch it arrives in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from connector.model import Lead

log = structlog.get_logger(__name__)

NUL = "\x00"


def clean_text(value: str) -> str:
    """`value` without the characters no store can hold (NUL)."""
    return value.replace(NUL, "") if NUL in value else value


def clean_bytes(body: bytes) -> bytes:
    """A raw payload (a webhook body) without NUL bytes, which a text column refuses.
    Removing them cannot break JSON (a raw NUL is not allowed in JSON text); JSON's
    escaped `\\u0000` is six ASCII characters the column holds, and the values it
    decodes to are cleaned at the pipeline's entry (`clean_leads`)."""
    return body.replace(b"\x00", b"") if b"\x00" in body else body


def _may_hold_nul(value: Any) -> bool:
    """Whether a payload may hold a NUL, in one C-speed pass: orjson writes a NUL as
    `\\u0000`, and the payload is serialised on the way to the store anyway. A false
    alarm (text that spells `\\u0000` itself, a value orjson cannot write) only sends
    the payload down the slow, exact walk. Without this, every lead's payload was
    copied to find nothing: 17 µs a lead in the writer, about 11% of its time."""
    try:
        return b"\\u0000" in orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return True


def clean_value(value: Any) -> tuple[Any, bool]:
    """`value` (text, or lists and dicts of it, as a payload is) cleaned; and whether
    anything changed. Iterative: a hostile payload may nest deeply."""
    if isinstance(value, str):
        cleaned = clean_text(value)
        return cleaned, cleaned is not value
    if not isinstance(value, dict | list) or not _may_hold_nul(value):
        return value, False
    changed = False
    root: Any = {} if isinstance(value, dict) else []
    todo: list[tuple[Any, Any]] = [(value, root)]
    while todo:
        source, target = todo.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(key, str) and NUL in key:
                key, changed = clean_text(key), True
            if isinstance(item, str) and NUL in item:
                item, changed = clean_text(item), True
            elif isinstance(item, dict | list):
                child: Any = {} if isinstance(item, dict) else []
                todo.append((item, child))
                item = child
            if isinstance(target, dict):
                target[key] = item
            else:
                target.append(item)
    return (root, True) if changed else (value, False)


def _batch_may_hold_nul(records: Sequence[Lead]) -> bool:
    """Whether any text `clean_leads` cleans may hold a NUL, in ONE orjson pass over the
    whole batch (the `_may_hold_nul` test, a batch at a time): a NUL is written as
    `\\u0000` wherever it is, key or value. A batch without one (nearly every batch)
    then costs about a microsecond a lead instead of a pass per lead and payload; a
    false alarm only takes the exact walk below."""
    try:
        blob = orjson.dumps(
            [(x.fields, x.custom, x.source_id, x.ref, x.raw, x.context) for x in records],
            option=orjson.OPT_NON_STR_KEYS,
        )
    except (TypeError, orjson.JSONEncodeError):
        return True
    return b"\\u0000" in blob


def clean_leads(records: Sequence[Lead]) -> None:
    """Clean every text of each lead in place (fields, custom attributes, ids, the raw
    record and its context). The record is kept; which fields changed is logged by
    name only (never the values)."""
    if not _batch_may_hold_nul(records):
        return
    for lead in records:
        changed: list[str] = []
        for name, text in list(lead.fields.items()):
            if isinstance(text, str) and NUL in text:
                lead.fields[name] = clean_text(text)
                changed.append(name)
        for name in list(lead.custom):
            lead.custom[name], dirty = clean_value(lead.custom[name])
            if dirty:
                changed.append(name)
        if lead.source_id is not None and NUL in lead.source_id:
            lead.source_id = clean_text(lead.source_id)
            changed.append("source_id")
        lead.ref = clean_text(lead.ref)
        lead.raw, dirty_raw = clean_value(lead.raw)
        lead.context, _ = clean_value(lead.context)
        if changed or dirty_raw:
            log.info(
                "ingest.text_cleaned",
                source=lead.source,
                ref=lead.ref,
                fields=changed or ["raw"],
                reason="NUL characters removed (no store can hold them)",
            )
