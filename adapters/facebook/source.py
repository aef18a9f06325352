"""Facebook Lead Ads as a lead source: form discovery, windowed polls, backfill.

Polling is the truth, the webhook a hint (field-notes: 30-40% of webhooks never
arrive). Each poll of a form reads leads created in [last end - lag, now], where `now`
is fixed when the poll starts (the Singer "signpost": leads created while it runs are
the next poll's). The new end is committed with the last batch of the window; re-read
leads are recognised by their lead id and cost nothing. A poll that finds nothing costs
one call per form: forms are discovered every `discover_every` seconds, not every poll.

Graph returns leads newest first, so after each batch everything above the oldest lead
seen is stored: polls and backfills both commit that bound with each batch and a run
that was cut short continues below it. If a page ever comes back out of order, the
bound stops moving and only a finished window counts (correct, just less resumable).
Backfill reads a fixed range once, with a cursor per (range, form).

Throttling pauses the Page it happened on for the time Meta announces (persisted in
source health, so every replica and the next run respect it); other Pages go on. An
app-level throttle (codes 4, 17, X-App-Usage at the limit) pauses every Page: they all
share the app's one Graph client and its "app" scope. Token and permission errors
mark the Page failing with what to do, and are not retried.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from adapters.facebook.config import FacebookConfig, PageConfig
from adapters.facebook.graph import (
    APP,
    Action,
    Graph,
    GraphClient,
    GraphError,
    backoff_after,
    page_scope,
)
from adapters.facebook.leads import DEFAULT_MAPPING, LEAD_FIELDS, to_lead
from connector.sdk import (
    THROTTLED_SECONDS,
    Batch,
    Catalogue,
    Health,
    Lead,
    Mapping,
    SourceError,
    load_mapping,
)

log = structlog.get_logger(__name__)

DAY = 86400.0
RETENTION_DAYS = 90  # Meta keeps leads about 90 days (reference §A, unverified upstream)
Reporter = Callable[..., None]


@dataclass
class Form:
    id: str
    name: str
    page_id: str
    status: str


@dataclass
class PageState:
    """What the source knows about a Page between runs of this process."""

    paused_until: float = 0.0
    throttles: int = 0
    failing: str | None = None


@dataclass
class FacebookSource:
    """The lead forms of the configured Pages, one stream per form."""

    config: FacebookConfig
    catalogue: Catalogue
    clock: Callable[[], float] = time.time
    stopping: threading.Event | None = None
    report: Reporter | None = None
    batch_size: int = 1000
    graph_factory: Callable[[str], Graph] | None = None
    """Tests: a Graph double per token instead of calls over HTTP."""
    _client: GraphClient | None = None
    _graphs: dict[tuple[str, str], Graph] = field(default_factory=dict)
    _forms: dict[str, Form] = field(default_factory=dict)
    _discovered_at: float = 0.0
    _mappings: dict[Path, Mapping] = field(default_factory=dict)
    _interests: dict[str, list[str]] = field(default_factory=dict)
    pages: dict[str, PageState] = field(default_factory=dict)
    name: str = field(init=False)
    """The source name stored with every lead (`facebook.source`)."""

    def __post_init__(self) -> None:
        self.name = self.config.source

    # -- Graph clients --------------------------------------------------------------

    def _page(self, page_id: str) -> PageConfig:
        for page in self.config.pages:
            if page.id == page_id:
                return page
        raise SourceError(f"page {page_id} is not in the facebook section of the config")

    def graph(self, page_id: str) -> Graph:
        page = self._page(page_id)
        secret = page.access_token or self.config.system_user_token
        if secret is None:
            raise SourceError(
                f"page {page_id} has no access_token and the facebook section has no "
                "system_user_token: give one of them"
            )
        token = secret.get_secret_value()
        key = (page_id, token)
        if key not in self._graphs:
            if self.graph_factory is not None:
                self._graphs[key] = self.graph_factory(token)
            else:
                self._graphs[key] = Graph(
                    self.client, token, self.config.app_secret.get_secret_value(), page_id
                )
        return self._graphs[key]

    @property
    def client(self) -> GraphClient:
        """The app's one Graph client: its session and its "app" scope are shared by
        every Page, so an app-level throttle holds all of them."""
        if self._client is None:
            self._client = GraphClient(
                self.config.graph_url,
                self.config.api_version,
                timeout=self.config.timeout,
                app_usage_limit=self.config.app_usage_limit,
                stopping=self.stopping,
            )
        return self._client

    @property
    def calls(self) -> int:
        """Graph calls made by this source object so far (retries included)."""
        if self._client is not None:
            return self._client.calls
        return sum({id(g): g.calls for g in self._graphs.values()}.values())

    # -- health ---------------------------------------------------------------------

    def state(self, page_id: str) -> PageState:
        return self.pages.setdefault(page_id, PageState())

    def available(self, page_id: str) -> bool:
        state = self.state(page_id)
        return state.failing is None and state.paused_until <= self.clock()

    def _tell(self, page_id: str, state: Health, reason: str | None, until: float = 0) -> None:
        if self.report is not None:
            when = datetime.fromtimestamp(until, UTC) if until else None
            self.report(f"{self.name}:{page_id}", state, reason, until=when)

    def trouble(self, page_id: str, error: GraphError) -> None:
        """Pause or fail a Page after an error that retrying now will not fix. An
        app-level throttle pauses every Page of the app, a Page-level one that Page."""
        state = self.state(page_id)
        if error.action is Action.THROTTLED:
            state.throttles += 1
            wait = error.retry_after or backoff_after(state.throttles)
            app = error.scope == APP
            if self._client is not None:
                # The client's scope waits as long as the Pages do (never shorter), so
                # the first call after the pause is not refused by a leftover one.
                scope = self._client.scope(APP if app else page_scope(page_id))
                wait = max(wait, scope.paused_for())
                scope.pause(wait)
            until = self.clock() + wait
            THROTTLED_SECONDS.labels("facebook").inc(wait)
            held = [p.id for p in self.config.pages] if app else [page_id]
            log.warning(
                "facebook.throttled",
                page=page_id,
                code=error.code,
                scope="app" if app else "page",
                pages=len(held),
                pause_s=round(wait),
            )
            for held_id in held:
                paused = self.state(held_id)
                paused.paused_until = max(paused.paused_until, until)
                self._tell(held_id, "paused", error.advice, paused.paused_until)
        elif error.action in (Action.TOKEN, Action.PERMISSION):
            state.failing = error.advice
            log.warning("facebook.page_failing", page=page_id, code=error.code)
            self._tell(page_id, "failing", error.advice)
        else:
            raise error

    def _fine(self, page_id: str) -> None:
        state = self.state(page_id)
        state.throttles = 0
        self._tell(page_id, "ok", None)

    def restore(self, health: dict[str, dict[str, Any]]) -> None:
        """Respect pauses recorded by an earlier run or another replica."""
        for page in self.config.pages:
            row = health.get(f"{self.name}:{page.id}")
            until = row.get("paused_until") if row else None
            if isinstance(until, datetime) and row and row.get("state") == "paused":
                self.state(page.id).paused_until = max(
                    self.state(page.id).paused_until, until.timestamp()
                )

    # -- LeadSource -----------------------------------------------------------------

    def check(self) -> None:
        """List one form of each Page, the least the source needs; the error says what
        to fix."""
        for page in self.config.pages:
            try:
                self.graph(page.id).get(
                    page.id, "leadgen_forms", params={"fields": "id", "limit": 1}
                )
            except GraphError as exc:
                raise SourceError(f"facebook page {page.id}: {exc.advice}") from None

    def context(self) -> dict[str, Any]:
        return {
            "kind": "facebook",
            "source": self.name,
            "region": self.config.region,
            "mapping": str(self.config.mapping) if self.config.mapping else None,
            "form_mappings": {
                form: str(path)
                for page in self.config.pages
                for form, path in page.form_mappings.items()
            }
            | {
                f"page:{page.id}": str(page.mapping)
                for page in self.config.pages
                if page.mapping is not None
            },
        }

    def discover(self, *, statuses: tuple[str, ...] = ("ACTIVE",), force: bool = False) -> None:
        """Find the forms of every available Page (cached for `discover_every`)."""
        if (
            not force
            and self._forms
            and self.clock() - self._discovered_at < (self.config.discover_every)
        ):
            return
        found: dict[str, Form] = {}
        for page in self.config.pages:
            if not self.available(page.id):
                # Keep what an earlier discovery knew of a paused Page's forms.
                found.update({k: f for k, f in self._forms.items() if f.page_id == page.id})
                continue
            wanted = None if page.forms == "all" else set(page.forms)
            try:
                for chunk in self.graph(page.id).pages(
                    page.id, "leadgen_forms", params={"fields": "id,name,status", "limit": 100}
                ):
                    for item in chunk:
                        form = Form(
                            str(item["id"]), str(item.get("name") or ""), page.id,
                            str(item.get("status") or "ACTIVE"),
                        )  # fmt: skip
                        if (wanted is None or form.id in wanted) and form.status in statuses:
                            found[form.id] = form
            except GraphError as exc:
                self.trouble(page.id, exc)
        self._forms = found
        self._discovered_at = self.clock()

    def forms(self) -> dict[str, Form]:
        return dict(self._forms)

    def streams(self) -> list[str]:
        """Form ids of the available Pages' active forms."""
        self.discover()
        return sorted(f.id for f in self._forms.values() if self.available(f.page_id))

    def read(self, stream: str, cursor: Any) -> Iterator[Batch]:
        """Leads of form `stream` created since the cursor's end, minus the lag window.

        The cursor is `{"until": T}` between polls. While a window is being read it also
        holds `"window": {"since", "until", "below"}`: everything above `below` is
        stored, so a poll cut short (kill -9, SIGTERM, throttle) resumes below it
        instead of reading the window again."""
        form = self._forms.get(stream)
        if form is None or not self.available(form.page_id):
            return
        before = cursor if isinstance(cursor, dict) else {}
        pending = before.get("window")
        if isinstance(pending, dict):
            since, until = float(pending["since"]), float(pending["until"])
            below = float(pending.get("below", until))
        else:
            now = self.clock()
            last = before.get("until")
            since = (
                float(last) - self.config.lag
                if last is not None
                else now - self.config.first_poll_days * DAY
            )
            until = below = now
        kept = {k: v for k, v in before.items() if k != "window"}

        def progress(low: int | None) -> Any:
            if low is None:  # order not trusted: only the finished window counts
                return before or None
            window = {"since": int(since), "until": int(until), "below": low}
            return {**kept, "window": window}

        yield from self._window(form, since, below, before or None, progress, {"until": int(until)})

    def backfill(self, form: Form, since: float, until: float, cursor: Any) -> Iterator[Batch]:
        """Leads of `form` created in [since, until], resumable below the cursor's bound."""
        if isinstance(cursor, dict) and cursor.get("done"):
            return
        base = {"since": int(since), "until": int(until)}
        below = float(cursor["below"]) if isinstance(cursor, dict) and "below" in cursor else until
        start = cursor if isinstance(cursor, dict) else None
        yield from self._window(
            form,
            since,
            below,
            start,
            lambda low: {**base, "below": low} if low is not None else start,
            {**base, "done": True},
        )

    # -- the read loop ----------------------------------------------------------------

    def _window(
        self,
        form: Form,
        since: float,
        until: float,
        cursor: Any,
        progress: Callable[[int | None], Any],
        done: Any,
    ) -> Iterator[Batch]:
        """Leads created in [since, until] in batches. Every batch but the last carries
        `progress(bound)` (the oldest created_time below which all is still to read, or
        None once order cannot be trusted); the last carries `done`."""
        graph = self.graph(form.page_id)
        mapping = self.mapping_for(form)
        params = {
            "fields": LEAD_FIELDS,
            "limit": self.config.page_size,
            "filtering": [
                {"field": "time_created", "operator": "GREATER_THAN", "value": int(since) - 1},
                {"field": "time_created", "operator": "LESS_THAN", "value": int(until) + 1},
            ],
        }
        records: list[Lead] = []
        low: int | None = None
        ordered = True
        current = cursor
        try:
            # Read ahead two batches' worth of pages: the next batch's pages arrive while
            # this one is stored, so a backfill takes max(API wait, our CPU), not the sum.
            ahead = 2 * -(-self.batch_size // self.config.page_size)
            pages = graph.pages(form.id, "leads", params=params)
            for chunk in _prefetched(pages, depth=ahead):
                for raw in chunk:
                    lead = self.lead(raw, form, mapping)
                    records.append(lead)
                    ts = int(lead.occurred_at.timestamp()) if lead.occurred_at else None
                    if ts is not None and low is not None and ts > low:
                        ordered = False
                    if ts is not None:
                        low = ts if low is None else min(low, ts)
                if len(records) >= self.batch_size:
                    current = progress(low if ordered else None) or current
                    yield Batch(records, current)
                    records = []
                    if self.stopping is not None and self.stopping.is_set():
                        return  # the batch in hand is committed; the rest waits
        except GraphError as exc:
            if records:
                yield Batch(records, current)
            self.trouble(form.page_id, exc)
            return
        yield Batch(records, done)
        self._fine(form.page_id)

    def mapping_for(self, form: Form) -> Mapping:
        page = self._page(form.page_id)
        path = page.form_mappings.get(form.id) or page.mapping or self.config.mapping
        if path is None:
            return DEFAULT_MAPPING
        if path not in self._mappings:
            self._mappings[path] = load_mapping(path)
        return self._mappings[path]

    def lead(self, raw: dict[str, Any], form: Form, mapping: Mapping | None = None) -> Lead:
        """A Graph lead object as a Lead, enriched with the form and ad context."""
        interests = self.interests(form.page_id, raw.get("adset_id"))
        return to_lead(
            raw,
            source=self.name,
            mapping=mapping or self.mapping_for(form),
            catalogue=self.catalogue,
            region=self.config.region,
            form_name=form.name,
            page_id=form.page_id,
            interests=interests,
        )

    def interests(self, page_id: str, adset_id: Any) -> list[str] | None:
        """The ad set's targeting interests, fetched once per ad set."""
        if not adset_id or not self.config.fetch_interests:
            return None
        key = str(adset_id)
        if key not in self._interests:
            names: list[str] = []
            try:
                node = self.graph(page_id).get(key, params={"fields": "targeting"})
                targeting = node.get("targeting") or {}
                specs = [targeting, *(targeting.get("flexible_spec") or [])]
                names = sorted(
                    {str(i.get("name")) for s in specs for i in s.get("interests") or []}
                )
            except GraphError as exc:
                if exc.action is Action.THROTTLED:
                    raise
                log.info("facebook.no_interests", adset=key, code=exc.code)
            self._interests[key] = names
        return self._interests[key]

    def fetch(self, lead_id: str, page_id: str | None) -> dict[str, Any]:
        """One lead by id (a webhook's leadgen_id), with the Page's token."""
        page = page_id if page_id and any(p.id == page_id for p in self.config.pages) else None
        graph = self.graph(page or self.config.pages[0].id)
        return graph.get(lead_id, params={"fields": LEAD_FIELDS})


def _prefetched(pages: Iterator[list[Any]], depth: int = 4) -> Iterator[list[Any]]:
    """Read the next pages in a thread while the caller stores this one: a backfill is
    then bound by the API's latency or by our CPU, whichever is slower, not their sum."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    halt = threading.Event()

    def pump() -> None:
        try:
            for page in pages:
                if halt.is_set():
                    return
                box.put(("page", page))
            box.put(("end", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            box.put(("error", exc))

    thread = threading.Thread(target=pump, name="facebook-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        halt.set()
        while thread.is_alive():  # unblock a pump waiting on a full queue
            try:
                box.get_nowait()
            except queue.Empty:
                thread.join(0.05)
