"""The interfaces adapters implement. The core depends on these, never on an adapter.

Adapters are found through the `leadsync.adapters` entry-point group: each names a
`Plugin` object, so the CLI and the daemon can use every installed adapter without the
core importing one (the way pytest and dlt find their plugins).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import typer

from connector.model import Lead


class SourceError(RuntimeError):
    """A source cannot be read; the message says what the admin should do."""


@dataclass(slots=True)
class Batch:
    """Records read from a stream and the cursor that is valid once they are stored.

    The pipeline commits `cursor` in the same transaction as the records, so a crash
    either keeps both or neither.
    """

    records: list[Lead]
    cursor: Any


@runtime_checkable
class LeadSource(Protocol):
    """Something leads come from: a lead form, a spreadsheet, a file, an inbox."""

    name: str
    """The source name stored with every lead (unique per deployment)."""

    def check(self) -> None:
        """Raise SourceError with an actionable message if the source cannot be read."""

    def streams(self) -> list[str]:
        """The independent streams of the source (forms, sheets, files), each with a cursor."""

    def read(self, stream: str, cursor: Any) -> Iterator[Batch]:
        """Records after `cursor` (None: from the start), in batches with their cursors."""

    def context(self) -> dict[str, Any]:
        """What a quarantine retry needs to map a raw record again (kind, mapping, region)."""


class Plugin(Protocol):
    """What an adapter package offers the core; every member is optional."""

    name: str

    def register_cli(self, groups: dict[str, typer.Typer]) -> None:
        """Add the adapter's commands to the CLI's groups (e.g. `import csv`, `fake facebook`)."""

    def remap(self, raw: Mapping[str, Any], context: Mapping[str, Any], ref: str) -> Lead:
        """Map a quarantined raw record again, with the current mapping."""


def plugins() -> dict[str, Plugin]:
    """Installed adapters, by name."""
    found: dict[str, Plugin] = {}
    for ep in entry_points(group="leadsync.adapters"):
        found[ep.name] = ep.load()
    return found
