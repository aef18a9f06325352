"""CSV import adapter: `leadsync import csv`, quarantine retries and the demo's first step."""

from __future__ import annotations

import shutil
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from adapters.csv.source import CsvSource, swallowed_rows
from connector.sdk import (
    Catalogue,
    Lead,
    Pipeline,
    SourceCase,
    Store,
    err,
    load_mapping,
    load_mapping_cached,
    out,
    print_stats,
    progress_bar,
    state,
)

SAMPLES = Path(__file__).parent / "samples"


class CsvPlugin:
    name = "csv"
    demo_order = 10

    def register_cli(self, groups: dict[str, typer.Typer]) -> None:
        groups["import"].command("csv")(import_csv)
        if "mapping" in groups:
            from adapters.csv.draft import mapping_draft

            groups["mapping"].command("draft")(mapping_draft)

    def remap(self, raw: MappingABC[str, Any], context: MappingABC[str, Any], ref: str) -> Lead:
        path = context.get("mapping")
        if not path:
            raise ValueError("this record was imported without a mapping file; import it again")
        mapping = load_mapping_cached(Path(path))  # once per file version, not per record
        catalogue = context.get("catalogue") or Catalogue.default()
        source = str(context.get("source") or mapping.source or "csv")
        lead = mapping.apply(
            raw, source=source, ref=ref, catalogue=catalogue, region=context.get("region")
        )
        swallowing = swallowed_rows(dict(raw))
        if swallowing:  # still broken: a new mapping cannot fix a file's quoting
            lead.problems.append(swallowing)
        return lead

    def contract_source(self, workdir: Path) -> SourceCase:
        """The contract suite's case: a growing CSV file (adapters/csv/contract.py)."""
        from adapters.csv.contract import CsvCase

        return CsvCase(workdir)

    def demo(self, store: Store, workdir: Path, console: Console) -> None:
        """Import the bundled messy sample, then a copy of it: the copy is read row by row
        (another file, so no cursor skips it) and must change nothing."""
        mapping_path = SAMPLES / "leads.yaml"

        def source(path: Path) -> CsvSource:
            found = CsvSource(
                name="customers-csv",
                paths=[path],
                mapping=load_mapping(mapping_path),
                mapping_path=mapping_path,
                catalogue=store.catalogue,
            )
            found.check()
            return found

        stats = Pipeline(store, workers=0).run(source(SAMPLES / "leads.csv"))
        print_stats(stats, "CSV import (bundled sample: MY, PL, VN, US)", False)
        copy = workdir / "leads (copy).csv"
        shutil.copyfile(SAMPLES / "leads.csv", copy)
        again = Pipeline(store, workers=0).run(source(copy))
        console.print(
            f"Importing a copy of the same file: {again.rows} rows read, {again.created} "
            f"created, {again.updated} updated, {again.merged} merged, {again.unchanged} "
            f"unchanged, {again.quarantined} already in quarantine (idempotent).\n"
        )


def import_csv(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="CSV file(s)."),
    mapping: Path | None = typer.Option(
        None,
        "--mapping",
        "-m",
        exists=True,
        metavar="FILE",
        help="Mapping YAML (default: inferred from the header and shown first).",
    ),
    source: str | None = typer.Option(
        None, help="Source name (default: the mapping's, or the file name)."
    ),
    region: str | None = typer.Option(None, help="Default phone region for this file (e.g. PL)."),
    encoding: str | None = typer.Option(None, help="File encoding (default: detected)."),
    delimiter: str | None = typer.Option(None, help="Delimiter (default: detected)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Do everything, then roll back."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    workers: int | None = typer.Option(None, help="Normalising processes (default: one per core)."),
) -> None:
    """Import existing customers or leads from CSV through a mapping."""
    app_state = state(ctx)
    if mapping is None:
        loaded = _infer_mapping(app_state, files[0], encoding, delimiter, dry_run, as_json)
        if loaded is None:
            return
    else:
        loaded = load_mapping(mapping)
    store = app_state.store()
    csv_source = CsvSource(
        name=source or loaded.source or files[0].stem,
        paths=files,
        mapping=loaded,
        mapping_path=mapping,
        catalogue=store.catalogue,
        region=region.upper() if region else None,
        encoding=encoding,
        delimiter=delimiter,
    )
    csv_source.check()
    total = csv_source.count_rows()
    with progress_bar(total, not as_json) as progress:
        pipeline = Pipeline(
            store,
            default_region=app_state.config().default_region,
            workers=workers,
            dry_run=dry_run,
            progress=progress,
        )
        stats = pipeline.run(csv_source)
    title = f"import {csv_source.name}" + (" (dry run: nothing was written)" if dry_run else "")
    print_stats(stats, title, as_json, {"dry_run": dry_run, "source": csv_source.name})


def _infer_mapping(
    app_state: Any,
    file: Path,
    encoding: str | None,
    delimiter: str | None,
    dry_run: bool,
    as_json: bool,
) -> Any:
    """The inferred mapping, shown first (on stderr with --json, so the JSON stays
    clean); None with --dry-run, which stops once the mapping is shown."""
    from adapters.csv.draft import describe, inferred

    catalogue = app_state.config().catalogue()
    found, loaded = inferred(file, catalogue, encoding, delimiter)
    console = err if as_json else out
    for line in describe(found):
        console.print(line, highlight=False, markup=False)
    if dry_run:
        console.print("Dry run: stopping here; nothing was imported.", highlight=False)
        return None
    return loaded


plugin = CsvPlugin()
