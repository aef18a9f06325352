"""Structured logs: readable on a terminal, JSON lines elsewhere (a service's journal).

At INFO nothing personal is logged: events carry counts, ids of sources and batches,
never emails, phones or names (those go to quarantine rows, not logs)."""

from __future__ import annotations

import logging
import sys

import structlog

MESSAGE_LIMIT = 500

# Lines of a database error that quote row values: PostgreSQL's DETAIL ("Key
# (key)=(email:ana@example.com) already exists") and SQLAlchemy's parameter dump (the
# engines also set hide_parameters). Errors go to logs and to `leadsync status`.
_VALUE_LINES = ("DETAIL:", "[parameters:")


def describe(exc: BaseException) -> str:
    """An exception as "Class: message" for logs and status tables: short, and without
    the lines in which a database quotes the values of the row that failed."""
    lines = [ln for ln in str(exc).splitlines() if not ln.lstrip().startswith(_VALUE_LINES)]
    text = f"{type(exc).__name__}: {' '.join(ln.strip() for ln in lines if ln.strip())}"
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


class _CurrentStderr:
    """Writes to `sys.stderr` as it is at each write, not as it was at `configure()`:
    a test runner's or a CLI runner's captured stream is closed after its command, and
    a logger bound to it would fail every later log call with "I/O operation on closed
    file"."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(verbosity: int = 0, json: bool | None = None) -> None:
    """Set up structlog; `verbosity` 0 = warnings, 1 = info, 2+ = debug."""
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    as_json = not sys.stderr.isatty() if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
