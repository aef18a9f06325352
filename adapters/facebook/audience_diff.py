"""What an audience push must send: the delta between the segment and what was sent.

Desired members are the audience's segment (minus test leads); what was last sent is
`connector.store.audiences`. Three ways to find the delta, all giving the same answer
(`tests/e2e/test_audiences.py` holds them to it after random changes, on both stores):

- **incremental** (the normal push): only contacts changed since the audience's
  watermark (`contacts.updated_at` after it), plus removals an earlier push deferred.
  Every write that can move a contact in or out of a segment bounded to the contact's
  row (status, attributes, custom values, the test flag, a merge or unmerge) stamps
  updated_at, so nothing else can differ. A 1% churn of a million members reads and
  hashes ten thousand rows.
- **scan** (three indexed joins over the whole segment): for segments whose truth moves
  with time or lives in other tables (`created > 30d`, lead fields, last_activity,
  has_issues: `audience_state.row_bound`), and for the first push.
- **walk** (hash every member, one merge walk over both id-ordered streams): on
  `--full`, and when the segment or the keys changed since the watermark was taken (the
  basis differs: every row may hash differently with no contact changed).

Match keys are hashed from the core's normalised values (never the SDK's hashing: it
hashes phones raw and drops non-Latin letters, §E). EMAIL and PHONE, the keys nearly
every audience uses, are hashed straight from the stored values (already normalised on
ingest); `test_audiences.py` proves that equal to `normalize.match_keys`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from adapters.facebook.audience_config import AudienceConfig
from connector.sdk import Segment, SegmentCompiler, Store, audience_state, normalize

Change = tuple[str, int, str, list[str]]
"""("add" or "remove", contact id, key hash, hashed row)."""

FIELDS = ("email", "phone", "first_name", "last_name", "city", "state", "zip", "country",
          "date_of_birth", "gender", "external_id")  # fmt: skip


def key_row(contact: Any, keys: Sequence[str]) -> list[str] | None:
    """The contact's hashed match keys in `keys` order ("" where it has none), or None
    when it has none of them (nothing to match on: not sent)."""
    fast = {"EMAIL", "PHONE"}
    values: dict[str, str] = {}
    if fast.issuperset(keys):
        if contact.email:
            values["EMAIL"] = normalize.sha256(contact.email)
        if contact.phone:
            values["PHONE"] = normalize.sha256(contact.phone.lstrip("+"))
    else:
        found, _ = normalize.match_keys({f: getattr(contact, f) for f in FIELDS})
        values = {
            k: (v["normalized"] if k == "EXTERN_ID" else v["sha256"]) for k, v in found.items()
        }
    row = [values.get(k, "") for k in keys]
    return row if any(row) else None


def row_hash(row: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(row).encode()).hexdigest()[:32]


def segment_where(store: Store, config: AudienceConfig) -> Any:
    """The audience's segment, test leads left out, compiled for the store."""
    return Segment.of(f"({config.where}) and not is_test", store.catalogue).where(
        SegmentCompiler(store.dialect, store.catalogue)
    )


def fields_for(config: AudienceConfig) -> tuple[str, ...]:
    """The contact columns its keys are hashed from."""
    return ("email", "phone") if {"EMAIL", "PHONE"}.issuperset(config.keys) else FIELDS


def basis(store: Store, config: AudienceConfig) -> str:
    """What a watermark is valid for (the segment as the catalogue reads it, the keys)."""
    return audience_state.basis(config.where, config.keys, store.catalogue)


def desired(
    store: Store, config: AudienceConfig, batch: int = 5000
) -> Iterator[tuple[int, str, list[str]]]:
    """(contact id, key hash, row) of every member the segment wants, by contact id."""
    where = segment_where(store, config)
    for contact in audience_state.members_of(store, where, FIELDS, batch):
        row = key_row(contact, config.keys)
        if row is not None:
            yield int(contact.id), row_hash(row), row


def walk(
    wanted: Iterator[tuple[int, str, list[str]]], held: Iterator[tuple[int, str, list[str]]]
) -> Iterator[Change]:
    """The merge walk: ("add", contact, hash, row) and ("remove", contact, hash, row)."""
    w, h = next(wanted, None), next(held, None)
    while w is not None or h is not None:
        if h is None or (w is not None and w[0] < h[0]):
            assert w is not None
            yield "add", *w
            w = next(wanted, None)
        elif w is None or h[0] < w[0]:
            yield "remove", *h
            h = next(held, None)
        else:
            if w[1] != h[1]:  # its keys changed: out with the old row, in with the new
                yield "remove", *h
                yield "add", *w
            w, h = next(wanted, None), next(held, None)


def mode(store: Store, name: str, config: AudienceConfig, full: bool = False) -> str:
    """ "incremental", "scan" or "walk": how this push finds the delta (see above)."""
    state = audience_state.ids(store, name)
    if full:
        return "walk"
    if not state.get("watermark"):
        return "scan"
    if state.get("basis") != basis(store, config):
        return "walk"
    return "incremental" if audience_state.row_bound(config.where) else "scan"


def changes(
    store: Store, name: str, config: AudienceConfig, full: bool = False
) -> Iterator[Change]:
    """The delta, found the way `mode` says."""
    how = mode(store, name, config, full)
    if how == "walk":
        with audience_state.read(store) as conn:
            yield from walk(desired(store, config), audience_state.sent(conn, name))
    elif how == "scan":
        yield from scan(store, name, config)
    else:
        state = audience_state.ids(store, name)
        since = datetime.fromisoformat(str(state["watermark"]))
        yield from incremental(store, name, config, since, state.get("deferred") or [])


def scan(store: Store, name: str, config: AudienceConfig) -> Iterator[Change]:
    """The store finds the candidates over the whole segment (audience_state.delta);
    only their keys are hashed here."""
    where = segment_where(store, config)
    for kind, contact in audience_state.delta(store, name, where, fields_for(config)):
        if kind == "gone":
            yield "remove", int(contact.contact_id), str(contact.key_hash), list(contact.row)
            continue
        row = key_row(contact, config.keys)
        if kind == "new":
            if row is not None:
                yield "add", int(contact.id), row_hash(row), row
            continue
        yield from _against(int(contact.id), row, contact.key_hash, contact.row)


def incremental(
    store: Store, name: str, config: AudienceConfig, since: datetime, also: Sequence[int]
) -> Iterator[Change]:
    """Only contacts changed after `since` (and the deferred `also`), each compared with
    what was sent for it."""
    where = segment_where(store, config)
    found = audience_state.touched(store, name, where, fields_for(config), since, also)
    for contact in found:
        row = key_row(contact, config.keys) if contact.wanted else None
        yield from _against(int(contact.id), row, contact.key_hash, contact.row)


def _against(
    contact: int, row: list[str] | None, held_hash: str | None, held_row: Any
) -> Iterator[Change]:
    """One contact's change: `row` is what it should hold (None: nothing), against the
    row sent (None: none)."""
    new_hash = row_hash(row) if row is not None else None
    if new_hash == held_hash:
        return
    if held_hash is not None:
        yield "remove", contact, str(held_hash), list(held_row)
    if row is not None and new_hash is not None:
        yield "add", contact, new_hash, row
