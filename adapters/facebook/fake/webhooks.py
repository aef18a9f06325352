"""Leadgen webhooks as Meta sends them (reference §E): signed POSTs of page changes,
retried on a compressed schedule, with the drops, duplicates and batching of `Faults`."""

from __future__ import annotations

import collections
import hashlib
import heapq
import hmac
import json
import threading
import time
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from adapters.facebook.fake.server import FakeGraph


class WebhookSender:
    """Background sender: a heap of due deliveries, retried on the compressed schedule."""

    def __init__(self, graph: FakeGraph) -> None:
        self.graph = graph
        self.cond = threading.Condition()
        self.heap: list[tuple[float, int, dict[str, Any]]] = []
        self.pending: list[dict[str, Any]] = []  # fresh changes not yet batched
        self.in_flight = 0
        self.seq = 0
        self.stats: collections.Counter[str] = collections.Counter()
        self.http = requests.Session()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="fake-graph-webhooks", daemon=True)
        self.thread.start()

    def enqueue(self, page_id: str, value: dict[str, Any]) -> None:
        with self.cond:
            self.stats["queued"] += 1
            self.pending.append(
                {
                    "page_id": page_id,
                    "value": value,
                    "time": int(self.graph.clock()),
                    "queued_at": time.monotonic(),
                }
            )
            self.cond.notify_all()

    def _payload(self, changes: list[dict[str, Any]]) -> bytes:
        entries: dict[str, dict[str, Any]] = {}
        for ch in changes:
            entry = entries.setdefault(
                ch["page_id"], {"id": ch["page_id"], "time": ch["time"], "changes": []}
            )
            entry["changes"].append({"field": "leadgen", "value": ch["value"]})
        return json.dumps({"object": "page", "entry": list(entries.values())}).encode()

    def _schedule(self, body: bytes, attempt: int, delay: float) -> None:
        self.seq += 1
        heapq.heappush(
            self.heap, (time.monotonic() + delay, self.seq, {"body": body, "attempt": attempt})
        )

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.stopping:
                    # batch mode: let changes queued together (within 50 ms) coalesce
                    if self.pending and (
                        not self.graph.faults.batch
                        or time.monotonic() - self.pending[0]["queued_at"] >= 0.05
                    ):
                        self._take_pending()
                    now = time.monotonic()
                    if self.heap and self.heap[0][0] <= now:
                        break
                    self.cond.wait(0.05 if not self.heap else min(0.05, self.heap[0][0] - now))
                if self.stopping:
                    return
                _, _, item = heapq.heappop(self.heap)
                self.in_flight += 1
            try:
                self._attempt(item)
            finally:
                with self.cond:
                    self.in_flight -= 1
                    self.cond.notify_all()

    def _take_pending(self) -> None:
        faults, rng = self.graph.faults, self.graph.fault_rng
        changes, self.pending = self.pending, []
        kept = []
        for ch in changes:
            if rng.random() < faults.drop_rate:
                self.stats["dropped"] += 1
            else:
                kept.append(ch)
        groups = (
            [kept[i : i + 1000] for i in range(0, len(kept), 1000)]
            if faults.batch
            else [[ch] for ch in kept]
        )
        for group in groups:
            if group:
                self._schedule(self._payload(group), 0, 0.0)

    def _attempt(self, item: dict[str, Any]) -> None:
        graph, faults = self.graph, self.graph.faults
        url = graph.webhook_url
        body, attempt = item["body"], item["attempt"]
        self.stats["attempts"] += 1
        ok = False
        if url and attempt >= faults.fail_first_n:
            sig = hmac.new(graph.app_secret.encode(), body, hashlib.sha256).hexdigest()
            try:
                resp = self.http.post(
                    url,
                    data=body,
                    timeout=5,
                    headers={
                        "Content-Type": "application/json",
                        "X-Hub-Signature-256": f"sha256={sig}",
                        "User-Agent": "facebookexternalua",
                    },
                )
                ok = 200 <= resp.status_code < 300
            except requests.RequestException:
                ok = False
        with self.cond:
            if ok:
                self.stats["delivered"] += 1
                if not item.get("dup") and graph.fault_rng.random() < faults.duplicate_rate:
                    self.stats["duplicated"] += 1
                    self.seq += 1
                    heapq.heappush(
                        self.heap,
                        (
                            time.monotonic() + 0.01,
                            self.seq,
                            {"body": body, "attempt": 0, "dup": True},
                        ),
                    )
                return
            self.stats["failed_attempts"] += 1
            schedule = faults.retry_schedule
            if attempt < len(schedule):
                self.seq += 1
                heapq.heappush(
                    self.heap,
                    (
                        time.monotonic() + schedule[attempt],
                        self.seq,
                        {**item, "attempt": attempt + 1},
                    ),
                )
            else:  # Meta gives up after 36 h; here after the schedule
                self.stats["given_up"] += 1

    def flush(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.pending or self.heap or self.in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("webhook deliveries still queued")
                self.cond.wait(min(left, 0.05))

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.thread.join(timeout=2)
        self.http.close()
