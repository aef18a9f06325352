"""Conversion Leads, delivering: the "meta-conversions" outbox destination.

Rows written by adapters/facebook/conversions.py are sent to `POST /{dataset}/events`
(§C) in requests of at most 1,000 events, each one a CRM event: `action_source`
system_generated, `custom_data.event_source` crm and `lead_event_source`, the Meta lead
id unhashed in `user_data.lead_id`, email and phone as the hashes the row holds.

Meta discards an event older than 7 days or before the lead's creation, and one bad
event rejects its whole request. So such events are never sent: they end as dead
letters with the reason (`leadsync outbox list --state failed`). A request Graph
rejects as invalid is split in halves, again and again, so only the bad event ends
Failed (with Graph's message) and every other one is delivered. Transient errors and
throttles are Retry for what was not sent yet (the outbox backs off; a throttle's
announced wait is used). A rejected token, a missing permission or a dataset the token
cannot see are Retry too (nothing is lost while a person fixes it), and they mark the
health row `facebook.conversions` failing with what to do, shown by `leadsync status`
until the next request Meta accepts. Stages of one lead go in order because the outbox hands a
destination at most one row per contact per batch, the contact's oldest first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from adapters.facebook.audiences import AdsGraph, ads_graph
from adapters.facebook.config import FacebookConfig
from adapters.facebook.conversions_config import DESTINATION, ConversionsConfig
from adapters.facebook.errors import Action, GraphError
from connector.sdk import Delivered, DeliveryResult, Failed, OutboxRow, Retry

log = structlog.get_logger(__name__)

HEALTH = "facebook.conversions"
Report = Callable[..., None]
"""`Runtime.report(source, state, reason)`: where the destination says it is failing."""

MAX_EVENTS = 1_000  # events per request (§C)
MAX_AGE = 7 * 86_400  # Meta discards older events; one fails the whole request (§C)
MARGIN = 300  # seconds: an event this close to the limit may be past it when it lands


def event(payload: dict[str, Any], config: ConversionsConfig) -> dict[str, Any]:
    """The CRM event Meta is sent for one outbox row (§C Payload Specification)."""
    lead = str(payload["lead_id"])
    user: dict[str, Any] = {"lead_id": int(lead) if lead.isdigit() else lead}
    for key in ("em", "ph"):
        if payload.get(key):
            user[key] = list(payload[key])
    return {
        "event_name": payload["event_name"],
        "event_time": int(payload["event_time"]),
        "action_source": "system_generated",
        "user_data": user,
        "custom_data": {"event_source": "crm", "lead_event_source": config.lead_event_source},
    }


def _when(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")


def advice(exc: GraphError, dataset: str) -> str | None:
    """What a person must do about an error no retry fixes, for the dataset; None for
    the others (throttles, transient errors, a bad event)."""
    where = exc.where
    if exc.action is Action.TOKEN:
        return (
            f"the System User token was rejected {where}: {exc}. Generate a new one in "
            "Business Settings > System Users and set facebook.system_user_token; the "
            "events wait in the outbox meanwhile"
        )
    if exc.action is Action.PERMISSION:
        return (
            f"permission denied {where}: {exc}. Assign dataset {dataset} to the System "
            "User with permission to send events (Business Settings > Data sources > "
            "Datasets); the events wait in the outbox meanwhile"
        )
    if exc.action is Action.MISSING:
        return (
            f"dataset {dataset} is not visible {where}: {exc}. Check "
            "facebook.conversions.dataset_id and that the System User is assigned it"
        )
    return None


def unsendable(payload: dict[str, Any], now: float) -> str | None:
    """Why Meta would discard this event (it is then not sent), or None."""
    at = int(payload["event_time"])
    if at < now - MAX_AGE + MARGIN:
        return (
            f"older than 7 days (the stage changed {_when(at)}): Meta discards such "
            "events, so it was not sent"
        )
    created = payload.get("lead_created")
    if created is not None and at < int(created):
        return (
            f"the stage changed {_when(at)}, before the lead's creation "
            f"({_when(int(created))}): Meta discards such events, so it was not sent"
        )
    return None


class ConversionsDestination:
    """Delivers Conversion Leads events to one dataset."""

    name = DESTINATION
    batch_size = 1000
    """Meta takes at most 1,000 events a request (§C): the outbox hands us that many."""

    def __init__(
        self,
        graph: AdsGraph,
        config: ConversionsConfig,
        clock: Callable[[], float] = time.time,
        report: Report | None = None,
    ) -> None:
        self.graph, self.config, self.clock = graph, config, clock
        self.report = report
        self.failing: str | None = None
        """What a person must do, while the last request met a token/permission error."""
        self.requests = 0
        """Requests sent (the bisection of a rejected one included)."""
        self.sent = 0
        """Events Meta accepted."""

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        results: list[DeliveryResult | None] = [None] * len(rows)
        now = self.clock()
        ready: list[int] = []
        for i, row in enumerate(rows):
            why = unsendable(row.payload, now)
            if why is None:
                ready.append(i)
            else:
                results[i] = Failed(why)
        events = [event(r.payload, self.config) for r in rows]
        for start in range(0, len(ready), MAX_EVENTS):
            if not self._send(events, ready[start : start + MAX_EVENTS], results):
                break  # a transient error or a throttle: the rest waits too
        waiting = Retry("not sent: an earlier request of the batch failed")
        return [r if r is not None else waiting for r in results]

    def _send(
        self, events: list[dict[str, Any]], part: list[int], results: list[DeliveryResult | None]
    ) -> bool:
        """Send events `part`; on an invalid request, split it until the bad event is
        alone. False when the rest of the batch must wait (transient, throttled)."""
        body: dict[str, Any] = {"data": [events[i] for i in part]}
        if self.config.test_event_code:
            body["test_event_code"] = self.config.test_event_code
        self.requests += 1
        try:
            self.graph.send("POST", self.config.dataset_id, "events", body=body)
        except GraphError as exc:
            if exc.action is Action.FAIL:
                if len(part) == 1:
                    results[part[0]] = Failed(f"Meta rejected the event: {exc}")
                    return True
                half = len(part) // 2
                return self._send(events, part[:half], results) and self._send(
                    events, part[half:], results
                )
            after = exc.retry_after if exc.action is Action.THROTTLED else None
            retry = Retry(f"{exc.action.value}: {exc}", after=after)
            for i in part:
                results[i] = retry
            log.warning("facebook.conversions_failed", action=exc.action.value, events=len(part))
            todo = advice(exc, self.config.dataset_id)
            if todo is not None and todo != self.failing:
                self.failing = todo
                if self.report is not None:
                    self.report(HEALTH, "failing", todo)
            return False
        for i in part:
            results[i] = Delivered()
        self.sent += len(part)
        if self.failing is not None:
            self.failing = None
            if self.report is not None:
                self.report(HEALTH, "ok")
        return True


def destinations(config: Any, report: Report | None = None) -> list[ConversionsDestination]:
    """The "meta-conversions" destination, when `facebook.conversions` is configured;
    `report` (the daemon's `Runtime.report`) receives its failing/ok health."""
    if not isinstance(config, FacebookConfig) or config.conversions is None:
        return []
    graph = ads_graph(
        config,
        config.conversions.dataset_id,
        "conversions",
        "allowed to send events to the dataset",
    )
    return [ConversionsDestination(graph, config.conversions, report=report)]
