"""Prometheus metrics, in one registry the daemon serves at /metrics.

Adapters import the metric objects from here and count what they do; label values are
source, adapter and job names, never anything personal."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

LEADS_INGESTED = Counter(
    "leadsync_leads_ingested",
    "Leads read from a source and stored (created, updated, merged or unchanged).",
    ["source"],
    registry=REGISTRY,
)
QUARANTINED = Counter(
    "leadsync_quarantined",
    "Records a source delivered that went to quarantine.",
    ["source"],
    registry=REGISTRY,
)
API_CALLS = Counter(
    "leadsync_api_calls",
    "Requests made to an external API.",
    ["adapter"],
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "leadsync_api_errors",
    "Error responses from an external API, by the API's own error code.",
    ["adapter", "code"],
    registry=REGISTRY,
)
THROTTLED_SECONDS = Counter(
    "leadsync_throttled_seconds",
    "Time a source or system spent paused because the API throttled it.",
    ["adapter"],
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "leadsync_webhooks",
    "Webhook requests received, by outcome (stored, forged, invalid).",
    ["source", "outcome"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "leadsync_job_duration_seconds",
    "How long each run of a scheduled job took.",
    ["job"],
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800),
)
JOB_LAST_SUCCESS = Gauge(
    "leadsync_job_last_success_timestamp_seconds",
    "Unix time of the last run of a job that ended without error.",
    ["job"],
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "leadsync_outbox_depth",
    "Outbox rows not yet delivered, by destination.",
    ["destination"],
    registry=REGISTRY,
)
OUTBOX_AGE = Gauge(
    "leadsync_outbox_oldest_age_seconds",
    "Age of the oldest undelivered outbox row, by destination.",
    ["destination"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Gauge(
    "leadsync_webhook_deliveries",
    "Stored webhook deliveries not processed, by source and state (pending: waiting for "
    "the drain; dead: failed too often, set aside for a person).",
    ["source", "state"],
    registry=REGISTRY,
)
OUTBOX_ROWS = Gauge(
    "leadsync_outbox_rows",
    "Outbox rows not delivered, by destination and state (pending, dead).",
    ["destination", "state"],
    registry=REGISTRY,
)
JOB_FAILURES = Counter(
    "leadsync_job_failures",
    "Runs of a scheduled job that ended with an error.",
    ["job"],
    registry=REGISTRY,
)
FORGED_UNLOGGED = Counter(
    "leadsync_forged_requests_unlogged",
    "Forged or unsigned webhook requests not logged one by one (the warning is "
    "rate-limited per route); their count is in the next warning and here.",
    ["route"],
    registry=REGISTRY,
)
