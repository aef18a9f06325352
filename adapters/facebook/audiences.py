"""Custom audiences kept in sync with segments: only the difference goes out.

Desired members are the audience's segment (minus test leads), read from the store in
contact-id order; what was last sent is `connector.store.audiences`, in the same order.
One merge walk over both streams gives the delta with flat memory whatever the size:
a contact in the segment and not sent is an add; one sent and no longer in the segment
(it left it, was merged away, lost its keys) is a remove of the row that was sent; one
whose keys changed is a remove of the old row and an add of the new. A merge is one
remove (the absorbed contact, now a tombstone) and at most one add (the survivor).

Match keys are hashed here from the core's normalised values (never the SDK's hashing:
it hashes phones raw and drops non-Latin letters, §E). EMAIL and PHONE, the keys nearly
every audience uses, are hashed straight from the stored values (already normalised on
ingest); `test_audiences.py` proves that equal to `normalize.match_keys`.

Calls (§B): adds in batches of 10,000 (POST /users); removes in batches of 200 (the
DELETE's payload travels in the URL, which breaks near 300 rows); a rebuild through one
`usersreplace` session (batch_seq from 1, last_batch_flag on the last). No change, no
call. Each accepted batch is recorded with Meta's answer in one transaction.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from adapters.facebook.audience_config import AudienceConfig, AudiencesConfig
from adapters.facebook.config import FacebookConfig
from adapters.facebook.errors import GraphError
from adapters.facebook.graph import Graph, GraphClient
from connector.sdk import Segment, SegmentCompiler, Store, audience_state, normalize

log = structlog.get_logger(__name__)

ADD_BATCH = 10_000
REMOVE_BATCH = 200
LOOKALIKE_SEED = 100
_FIELDS = ("email", "phone", "first_name", "last_name", "city", "state", "zip", "country",
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
        found, _ = normalize.match_keys({f: getattr(contact, f) for f in _FIELDS})
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


def desired(
    store: Store, config: AudienceConfig, batch: int = 5000
) -> Iterator[tuple[int, str, list[str]]]:
    """(contact id, key hash, row) of every member the segment wants, by contact id."""
    where = segment_where(store, config)
    for contact in audience_state.members_of(store, where, _FIELDS, batch):
        row = key_row(contact, config.keys)
        if row is not None:
            yield int(contact.id), row_hash(row), row


@dataclass
class Delta:
    """What one audience needs: rows to add, rows to remove (with their contacts)."""

    adds: list[tuple[int, str, list[str]]] = field(default_factory=list)
    removes: list[tuple[int, list[str]]] = field(default_factory=list)


def walk(
    wanted: Iterator[tuple[int, str, list[str]]], held: Iterator[tuple[int, str, list[str]]]
) -> Iterator[tuple[str, int, str, list[str]]]:
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


def changes(
    store: Store, name: str, config: AudienceConfig, full: bool = False
) -> Iterator[tuple[str, int, str, list[str]]]:
    """The delta. By default the database finds it (`delta`): contacts of the segment
    not sent, members sent and no longer in it, and members whose contact changed since
    it was sent, whose keys alone are hashed again. `full` walks every member instead
    (hashing all of them): the check that nothing was missed."""
    if full:
        with audience_state.read(store) as conn:
            yield from walk(desired(store, config), audience_state.sent(conn, name))
        return
    yield from delta(store, name, config)


def _fields(config: AudienceConfig) -> tuple[str, ...]:
    return ("email", "phone") if {"EMAIL", "PHONE"}.issuperset(config.keys) else _FIELDS


def delta(
    store: Store, name: str, config: AudienceConfig
) -> Iterator[tuple[str, int, str, list[str]]]:
    """The store finds the candidates (audience_state.delta); only their keys are
    hashed here, so a 1% churn of a million members hashes ten thousand rows."""
    where = segment_where(store, config)
    for kind, contact in audience_state.delta(store, name, where, _fields(config)):
        if kind == "gone":
            yield "remove", int(contact.contact_id), str(contact.key_hash), list(contact.row)
            continue
        row = key_row(contact, config.keys)
        if kind == "new":
            if row is not None:
                yield "add", int(contact.id), row_hash(row), row
            continue
        new_hash = row_hash(row) if row is not None else None
        if new_hash == contact.key_hash:
            continue
        yield "remove", int(contact.id), str(contact.key_hash), list(contact.row)
        if row is not None and new_hash is not None:
            yield "add", int(contact.id), new_hash, row


def plan(store: Store, audiences: AudiencesConfig, full: bool = False) -> list[dict[str, Any]]:
    """Per audience: adds, removes and the calls a push would make. No call is made."""
    found = []
    for config in audiences.sets:
        adds = removes = 0
        for kind, *_ in changes(store, config.name, config, full):
            if kind == "add":
                adds += 1
            else:
                removes += 1
        found.append(
            {
                "audience": config.name,
                "adds": adds,
                "removes": removes,
                "calls": -(-adds // ADD_BATCH) + -(-removes // REMOVE_BATCH),
                "exclusion": config.exclusion,
                "lookalike": bool(config.lookalike),
            }
        )
    return found


def ads_graph(config: FacebookConfig, object_id: str, section: str, token: str) -> AdsGraph:
    """Graph calls on an ad account's or a dataset's objects (`object_id`) with the
    System User token; `section` and `token` (what the token must be allowed) word the
    error when there is none."""
    if config.system_user_token is None:
        raise ValueError(
            f"facebook.{section} needs facebook.system_user_token: a System User token {token}"
        )
    client = GraphClient(config.graph_url, config.api_version, timeout=config.timeout)
    return AdsGraph(
        client,
        config.system_user_token.get_secret_value(),
        config.app_secret.get_secret_value(),
        object_id,
    )


class AdsGraph(Graph):
    """Graph calls on an ad account's objects (its audiences), with the ad account as
    the throttle scope a custom-audience throttle (80003) pauses."""

    def send(self, method: str, *path: str, body: dict[str, Any]) -> dict[str, Any]:
        from adapters.facebook.errors import APP, page_scope
        from connector.sdk import HttpError

        url = "/" + "/".join((self.client.version, *path))
        self.calls += 1
        try:
            if method == "DELETE":  # Graph reads a DELETE's parameters from the URL
                query = {k: _param(v) for k, v in body.items()} | self._auth
                response = self.client.http.request(
                    "DELETE", url, params=query, scope=[APP, page_scope(self.page_id)]
                )
            else:
                response = self.client.http.request(
                    method, url, json=body, params=self._auth, scope=[APP, page_scope(self.page_id)]
                )
        except HttpError as exc:
            raise self._error(exc) from None
        answer = response.json()
        return answer if isinstance(answer, dict) else {"data": answer}


def _param(value: Any) -> str:
    import json

    return (
        value
        if isinstance(value, str)
        else json.dumps(value, sort_keys=True, separators=(",", ":"))
    )


@dataclass
class Pusher:
    """Pushes every configured audience of one ad account."""

    store: Store
    graph: AdsGraph
    audiences: AudiencesConfig
    _started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def ids(self, name: str) -> dict[str, Any]:
        return audience_state.ids(self.store, name)

    def _save_ids(self, name: str, ids: dict[str, Any]) -> None:
        audience_state.save_ids(self.store, name, ids)

    def audience_id(self, config: AudienceConfig) -> str:
        """The audience's Graph id: remembered, else found by name, else created."""
        ids = self.ids(config.name)
        if ids.get("id"):
            return str(ids["id"])
        account = self.audiences.account
        listed = self.graph.get(account, "customaudiences", params={"fields": "id,name"})
        match = next((a for a in listed.get("data", []) if a.get("name") == config.name), None)
        if match is None:
            match = self.graph.send(
                "POST",
                account,
                "customaudiences",
                body={
                    "name": config.name,
                    "subtype": "CUSTOM",
                    "customer_file_source": "USER_PROVIDED_ONLY",
                    "description": f"leadsync: {config.where}"[:200],
                },
            )
        found = str(match["id"])
        self._save_ids(config.name, {**ids, "id": found})
        return found

    def push(
        self, config: AudienceConfig, rebuild: bool = False, full: bool = False
    ) -> dict[str, Any]:
        audience = self.audience_id(config)
        result = self._replace(config, audience) if rebuild else self._diff(config, audience, full)
        result["lookalike"] = self._lookalike(config, audience)
        return result

    def _diff(self, config: AudienceConfig, audience: str, full: bool) -> dict[str, Any]:
        # Recorded as sent when the diff began: a contact changed while the push runs
        # is newer than that and is looked at again next time.
        self._started = datetime.now(UTC)
        adds: list[tuple[int, str, list[str]]] = []
        removes: list[tuple[int, list[str]]] = []
        stats = {"audience": config.name, "added": 0, "removed": 0, "calls": 0, "invalid": 0}
        for kind, contact, key_hash, row in changes(self.store, config.name, config, full):
            if kind == "add":
                adds.append((contact, key_hash, row))
                if len(adds) >= ADD_BATCH:
                    self._send_adds(config, audience, adds, stats)
                    adds = []
            else:
                removes.append((contact, row))
                if len(removes) >= REMOVE_BATCH:
                    self._send_removes(config, audience, removes, stats)
                    removes = []
        # Removes first at the end too: a changed contact's old row leaves before its new
        # one is added under the same contact id.
        if removes:
            self._send_removes(config, audience, removes, stats)
        if adds:
            self._send_adds(config, audience, adds, stats)
        return stats

    def _payload(self, config: AudienceConfig, rows: Sequence[list[str]]) -> dict[str, Any]:
        return {"schema": list(config.keys), "data": [list(r) for r in rows]}

    def _send_adds(
        self,
        config: AudienceConfig,
        audience: str,
        adds: list[tuple[int, str, list[str]]],
        stats: dict[str, Any],
    ) -> None:
        answer = self.graph.send(
            "POST", audience, "users", body={"payload": self._payload(config, [a[2] for a in adds])}
        )
        with audience_state.write(self.store) as conn:
            audience_state.record(conn, config.name, adds, [], self._started)
            audience_state.log(conn, config.name, "add", len(adds), answer, datetime.now(UTC))
        stats["added"] += len(adds)
        stats["calls"] += 1
        stats["invalid"] += int(answer.get("num_invalid_entries") or 0)

    def _send_removes(
        self,
        config: AudienceConfig,
        audience: str,
        removes: list[tuple[int, list[str]]],
        stats: dict[str, Any],
    ) -> None:
        answer = self.graph.send(
            "DELETE",
            audience,
            "users",
            body={"payload": self._payload(config, [r[1] for r in removes])},
        )
        with audience_state.write(self.store) as conn:
            audience_state.record(conn, config.name, [], [r[0] for r in removes], self._started)
            audience_state.log(conn, config.name, "remove", len(removes), answer, datetime.now(UTC))
        stats["removed"] += len(removes)
        stats["calls"] += 1

    def _replace(self, config: AudienceConfig, audience: str) -> dict[str, Any]:
        """Every member again through one usersreplace session; what was sent before is
        forgotten only once the last batch is accepted."""
        session = random.SystemRandom().randrange(1, 2**62)
        started = datetime.now(UTC)
        everyone: list[tuple[int, str, list[str]]] = []
        calls = invalid = 0
        members = list(desired(self.store, config))
        total = len(members)
        for seq, i in enumerate(range(0, max(total, 1), ADD_BATCH), start=1):
            batch = members[i : i + ADD_BATCH]
            last = i + ADD_BATCH >= total
            answer = self.graph.send(
                "POST",
                audience,
                "usersreplace",
                body={
                    "payload": self._payload(config, [b[2] for b in batch]),
                    "session": {
                        "session_id": session,
                        "batch_seq": seq,
                        "last_batch_flag": last,
                        "estimated_num_total": total,
                    },
                },
            )
            calls += 1
            invalid += int(answer.get("num_invalid_entries") or 0)
            everyone.extend(batch)
            with audience_state.write(self.store) as conn:
                audience_state.log(
                    conn, config.name, "replace", len(batch), answer, datetime.now(UTC)
                )
        with audience_state.write(self.store) as conn:
            audience_state.replace(conn, config.name, started)
            audience_state.record(conn, config.name, everyone, [], started)
        return {
            "audience": config.name,
            "replaced": len(everyone),
            "calls": calls,
            "invalid": invalid,
        }

    def _lookalike(self, config: AudienceConfig, audience: str) -> str | None:
        """The lookalike's id; created once the seed has 100 members."""
        spec = config.lookalike
        if spec is None:
            return None
        ids = self.ids(config.name)
        if ids.get("lookalike"):
            return str(ids["lookalike"])
        with audience_state.read(self.store) as conn:
            if audience_state.members(conn, config.name) < LOOKALIKE_SEED:
                return None  # Meta refuses a seed under 100 people: try at a later push
        try:
            made = self.graph.send(
                "POST",
                self.audiences.account,
                "customaudiences",
                body={
                    "name": f"{config.name} (lookalike {round(spec.ratio * 100)}%)",
                    "subtype": "LOOKALIKE",
                    "origin_audience_id": audience,
                    "lookalike_spec": {"ratio": spec.ratio, "country": ",".join(spec.countries)},
                },
            )
        except GraphError as exc:
            log.warning("facebook.lookalike_not_created", audience=config.name, error=str(exc))
            return None
        lookalike = str(made["id"])
        self._save_ids(config.name, {**ids, "lookalike": lookalike})
        return lookalike
