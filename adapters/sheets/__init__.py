"""Google Sheets: the sales team's spreadsheet as a lead source with a two-way Status
column.

Each configured worksheet gets a poll job (`sheets.poll.<source>`): one read of the
whole worksheet; new and edited rows ingested through the pipeline with the cursor; the
Status column's changed words handed to the status engine (adapters/sheets/sync.py);
then one write of the cells leadsync owns (keys for rows without one, the error
column). A worksheet with a `status_column` is a two-way system named by its `source`:
statuses decided elsewhere reach it through the outbox (`SheetDestination`).
`leadsync fake sheets` runs a local emulator of the Sheets v4 values API.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
import typer

from adapters.sheets.client import SheetsClient
from adapters.sheets.config import SheetConfig, SheetsConfig
from adapters.sheets.source import SheetSource
from adapters.sheets.sync import SheetDestination, observe_statuses
from connector.sdk import (
    Catalogue,
    IngestStats,
    Job,
    Lead,
    Mapping,
    Pipeline,
    Runtime,
    load_mapping_cached,
    open_by_record,
    reads,
)

log = structlog.get_logger(__name__)


def section(config: Any) -> SheetsConfig | None:
    found = getattr(config, "sheets", None)
    return found if isinstance(found, SheetsConfig) else None


def poll(source: SheetSource, pipeline: Pipeline) -> dict[str, int]:
    """One poll of one worksheet: read, ingest what changed, write back what is ours.
    The write comes after the rows are stored: a key that could not be written is made
    again, the same, at the next poll (it is derived from the row's content)."""
    stats: IngestStats = pipeline.run(source)
    # Statuses after the rows (a new row's contact must exist to take its status) and
    # before our writes (a failed write must not keep a rep's edit from the engine).
    statuses = observe_statuses(pipeline.store, source.config, source.last) if source.last else {}
    issues = people = None
    back = source.config.write_back
    if back.error is not None or back.score or back.owner or back.contact_id:
        with pipeline.store.reader.connect() as conn:
            if back.error is not None:
                issues = open_by_record(conn, source.name)
            if back.score or back.owner or back.contact_id:
                people = reads.contacts_by_source_id(conn, source.name)
    cells = source.writes(issues, people)
    sheet = source.config
    written = source.client.write(sheet.spreadsheet_id, sheet.worksheet, cells) if cells else 0
    return {
        **statuses,
        "rows": stats.rows,
        "created": stats.created,
        "updated": stats.updated,
        "quarantined": stats.quarantined,
        "cells_written": written,
    }


class SheetsPlugin:
    name = "sheets"
    config_key = "sheets"
    config_model = SheetsConfig

    def __init__(self) -> None:
        self._clients: dict[int, SheetsClient] = {}

    def client(self, config: SheetsConfig, runtime: Runtime | None = None) -> SheetsClient:
        """One client per config (its quota scope and session last between polls)."""
        key = id(config)
        if key not in self._clients:
            stopping = runtime.stopping if runtime is not None else None
            self._clients[key] = SheetsClient(config, stopping=stopping)
        return self._clients[key]

    def jobs(self, runtime: Runtime) -> Sequence[Job]:
        config = section(runtime.config)
        if config is None:
            return []
        region = getattr(runtime.config, "default_region", None)
        client = self.client(config, runtime)
        jobs = []
        for sheet in config.sheets:

            def run(rt: Runtime, sheet: SheetConfig = sheet) -> dict[str, int]:
                source = SheetSource(sheet, client, rt.store.catalogue, region)
                return poll(source, Pipeline(rt.store, default_region=region, workers=0))

            jobs.append(
                Job(
                    f"sheets.poll.{sheet.source}",
                    run,
                    every=sheet.poll_every,
                    jitter=min(10.0, sheet.poll_every / 10),
                )
            )
        return jobs

    def status_systems(self, config: Any) -> list[str]:
        """Every worksheet with a status column is a two-way system (its `source`)."""
        found = section(config)
        return [s.source for s in found.sheets if s.status_column] if found else []

    def destinations(self, runtime: Runtime) -> Sequence[SheetDestination]:
        config = section(runtime.config)
        if config is None:
            return []
        client = self.client(config, runtime)
        return [
            SheetDestination(sheet, client, runtime.store)
            for sheet in config.sheets
            if sheet.status_column
        ]

    def remap(self, raw: MappingABC[str, Any], context: MappingABC[str, Any], ref: str) -> Lead:
        """A quarantined row mapped again with the sheet's current mapping."""
        path = context.get("mapping")
        base = load_mapping_cached(Path(path)) if path else Mapping()
        ours = set(context.get("ours") or [])
        columns = {k: v for k, v in base.columns.items() if k not in ours}
        mapping = base.model_copy(update={"columns": columns, "id_column": context["key_column"]})
        catalogue = context.get("catalogue") or Catalogue.default()
        return mapping.apply(
            raw,
            source=str(context["source"]),
            ref=ref,
            catalogue=catalogue,
            region=context.get("region"),
        )

    def contract_source(self, workdir: Path) -> Any:
        """The contract suite's case: the Sheets emulator with six rows
        (adapters/sheets/contract.py)."""
        from adapters.sheets.contract import SheetsCase

        return SheetsCase()

    def contract_status(self, workdir: Path) -> Any:
        """The contract suite's two-way case: a worksheet with a Status column
        (adapters/sheets/contract.py)."""
        from adapters.sheets.contract import SheetsStatusCase

        return SheetsStatusCase()

    def demo_live(self) -> Any:
        """The Sheets emulator with the sample sales sheet, for `leadsync demo`."""
        from adapters.sheets.demo import SheetsDemo

        return SheetsDemo()

    def register_cli(self, groups: dict[str, typer.Typer]) -> None:
        groups["fake"].command("sheets")(fake_sheets)


def fake_sheets(
    port: int = typer.Option(8790, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
) -> None:
    """Run the local Google Sheets emulator (values get/batchGet/update/batchUpdate/append,
    render and input options, quotas, Google's errors) with a sample sales sheet."""
    from adapters.sheets.fake import serve

    serve(port, host=host)


plugin: Any = SheetsPlugin()

__all__ = ["SheetsConfig", "SheetsPlugin", "plugin", "poll"]
