"""Custom audiences kept in sync with segments: only the difference goes out.

The delta (what to add, what to remove) is adapters/facebook/audience_diff.py: normally
only the contacts changed since the audience's last push. A contact in the segment and
not sent is an add; one sent and no longer in the segment (it left it, was merged away,
lost its keys) is a remove of the row that was sent; one whose keys changed is a remove
of the old row and an add of the new. A merge is one remove (the absorbed contact, now
a tombstone) and at most one add (the survivor).

Calls (§B): adds in batches of 10,000 (POST /users); removes in batches of 200 (the
DELETE's payload travels in the URL, which breaks near 300 rows); a rebuild through one
`usersreplace` session (batch_seq from 1, last_batch_flag on the last). No change, no
call. Each accepted batch is recorded with Meta's answer in one transaction.

Meta refuses a removal that would leave the audience too small ("Audience Size too
low", not in the reference: a GUESS from public reports). Such a removal is deferred,
never fatal: the rest of the push goes on, the adds go first (they may lift the size),
the refused removals are tried once more at the end, and what is still refused is kept
as pending (`audiences status`) and tried again by the next push. A changed contact's
new row is not added while its old row's removal waits, so what was sent stays exact.

Token, permission and visibility errors, and a flagged audience, mark the audience
failing in `leadsync status` and `audiences status` with what a person should do; the
other audiences go on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from adapters.facebook.audience_config import AudienceConfig, AudiencesConfig
from adapters.facebook.audience_diff import (
    FIELDS as _FIELDS,
)
from adapters.facebook.audience_diff import (
    basis,
    changes,
    desired,
    key_row,
    row_hash,
    segment_where,
    walk,
)
from adapters.facebook.config import FacebookConfig
from adapters.facebook.errors import Action, GraphError
from adapters.facebook.graph import Graph, GraphClient
from connector.sdk import Store, audience_state, report_health

log = structlog.get_logger(__name__)

ADD_BATCH = 10_000
REMOVE_BATCH = 200
LOOKALIKE_SEED = 100
HEALTH = "facebook.audiences"  # health rows are "facebook.audiences:<audience name>"
__all__ = ["_FIELDS", "changes", "desired", "key_row", "row_hash", "segment_where", "walk"]


def too_small(exc: GraphError) -> bool:
    """Meta's refusal to remove members because the audience would get too small."""
    text = str(exc).lower()
    return "audience size too low" in text or "low audience size" in text


def advice(exc: GraphError, account: str) -> str | None:
    """What a person must do about an error no retry will fix, for an audience; None
    for the others (throttles, transient errors, bad requests)."""
    where = exc.where
    if exc.action is Action.TOKEN:
        return (
            f"the System User token was rejected {where}: {exc}. Generate a new one in "
            "Business Settings > System Users and set facebook.system_user_token"
        )
    if exc.action is Action.PERMISSION:
        return (
            f"permission denied {where}: {exc}. Give the System User's token "
            f"ads_management and assign it ad account {account} (Business Settings > "
            "System Users > Assign assets)"
        )
    if exc.action is Action.MISSING or (exc.code == 100 and exc.subcode == 33):
        return (
            f"the ad account or audience is not visible {where}: {exc}. Check "
            f"facebook.audiences.ad_account_id ({account}) and that the System User is "
            "assigned that ad account"
        )
    if exc.code == 100 and exc.subcode == 1713230:
        return f"Meta flagged the audience {where}: resolve it in Ads Manager, then push again"
    return None


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
        """Push one audience: its difference (or, `rebuild`, every member again). An
        error a person must act on (token, permission, a flagged audience) marks the
        audience failing with what to do and is returned as `failing`, not raised."""
        health = f"{HEALTH}:{config.name}"
        try:
            audience = self.audience_id(config)
            if rebuild:
                result = self._replace(config, audience)
            else:
                result = self._diff(config, audience, full)
            result["lookalike"] = self._lookalike(config, audience)
        except GraphError as exc:
            todo = advice(exc, self.audiences.account)
            if todo is None:
                raise
            log.warning("facebook.audience_failing", audience=config.name, code=exc.code)
            report_health(self.store, health, "failing", todo)
            return {"audience": config.name, "failing": todo, "calls": 0}
        deferred = len(self.ids(config.name).get("deferred") or [])
        if deferred:
            why = f"{deferred} removal(s) deferred: Meta says the audience would be too small"
            report_health(self.store, health, "ok", why)
        else:
            report_health(self.store, health, "ok")
        return result

    def _diff(self, config: AudienceConfig, audience: str, full: bool) -> dict[str, Any]:
        # Recorded as sent when the diff began: a contact changed while the push runs
        # is newer than that and is looked at again next time.
        self._started = started = datetime.now(UTC)
        push = _Push(self, config, audience)
        for kind, contact, key_hash, row in changes(self.store, config.name, config, full):
            if kind == "add":
                push.add(contact, key_hash, row)
            else:
                push.remove(contact, row)
        push.finish()
        # Only a push that got to its end moves the watermark: one that died half way
        # leaves the old one, and the next push looks at everything since again.
        self._save_state(config, started, sorted(push.deferred))
        return push.stats

    def _save_state(self, config: AudienceConfig, started: datetime, deferred: list[int]) -> None:
        mark = audience_state.watermark(self.store, started)
        self._save_ids(
            config.name,
            {
                **self.ids(config.name),
                "watermark": mark.isoformat(),
                "basis": basis(self.store, config),
                "deferred": deferred,
            },
        )

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
    ) -> bool:
        """Remove `removes`; False when Meta refused because the audience would get too
        small (nothing recorded: those members are still in)."""
        try:
            answer = self.graph.send(
                "DELETE",
                audience,
                "users",
                body={"payload": self._payload(config, [r[1] for r in removes])},
            )
        except GraphError as exc:
            if not too_small(exc):
                raise
            stats["calls"] += 1
            log.info("facebook.audience_removal_deferred", audience=config.name, rows=len(removes))
            return False
        with audience_state.write(self.store) as conn:
            audience_state.record(conn, config.name, [], [r[0] for r in removes], self._started)
            audience_state.log(conn, config.name, "remove", len(removes), answer, datetime.now(UTC))
        stats["removed"] += len(removes)
        stats["calls"] += 1
        return True

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
        self._save_state(config, started, [])  # the replace took every removal with it
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


class _Push:
    """One diff push's batches: adds of 10,000, removes of 200, and the removals Meta
    refuses while the audience is too small, kept aside and tried again after the adds.
    An add of a contact whose old row waits to be removed is held back until that
    removal is accepted (dropped, and the contact deferred, when it is not)."""

    def __init__(self, pusher: Pusher, config: AudienceConfig, audience: str) -> None:
        self.pusher, self.config, self.audience = pusher, config, audience
        self.adds: list[tuple[int, str, list[str]]] = []
        self.removes: list[tuple[int, list[str]]] = []
        self.refused: list[tuple[int, list[str]]] = []
        self.deferred: set[int] = set()
        self.held = 0  # adds kept back by the last flush (their old rows wait)
        self.stats: dict[str, Any] = {
            "audience": config.name, "added": 0, "removed": 0, "calls": 0, "invalid": 0,
            "deferred": 0,
        }  # fmt: skip

    def _waiting(self) -> set[int]:
        return {r[0] for r in self.removes} | {r[0] for r in self.refused} | self.deferred

    def add(self, contact: int, key_hash: str, row: list[str]) -> None:
        self.adds.append((contact, key_hash, row))
        if len(self.adds) - self.held >= ADD_BATCH:
            self._flush_adds()

    def remove(self, contact: int, row: list[str]) -> None:
        if self.refused:  # Meta said too small: the rest waits for the adds, then one try
            self.refused.append((contact, row))
            return
        self.removes.append((contact, row))
        if len(self.removes) >= REMOVE_BATCH:
            self._flush_removes()

    def _flush_removes(self) -> None:
        batch, self.removes = self.removes, []
        if batch and not self.pusher._send_removes(self.config, self.audience, batch, self.stats):
            self.refused.extend(batch)

    def _flush_adds(self) -> None:
        waiting = self._waiting()
        ready = [a for a in self.adds if a[0] not in waiting]
        self.adds = [a for a in self.adds if a[0] in waiting]
        self.held = len(self.adds)
        for start in range(0, len(ready), ADD_BATCH):
            self.pusher._send_adds(
                self.config, self.audience, ready[start : start + ADD_BATCH], self.stats
            )

    def finish(self) -> None:
        # Removes first: a changed contact's old row leaves before its new one is added
        # under the same contact id.
        self._flush_removes()
        self._flush_adds()
        retry, self.refused = self.refused, []
        for start in range(0, len(retry), REMOVE_BATCH):
            batch = retry[start : start + REMOVE_BATCH]
            if self.deferred or not self.pusher._send_removes(
                self.config, self.audience, batch, self.stats
            ):
                self.deferred.update(r[0] for r in batch)
        self.adds = [a for a in self.adds if a[0] not in self.deferred]
        self._flush_adds()
        self.stats["deferred"] = len(self.deferred)
