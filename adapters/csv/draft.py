"""A first mapping for a CSV file: what `import csv` without --mapping infers, and
`leadsync mapping draft FILE` (connector/infer.py recognises the headers)."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import typer

from adapters.csv.source import detect_delimiter, detect_encoding
from connector.sdk import (
    Catalogue,
    FieldMap,
    Inference,
    Mapping,
    SourceError,
    draft,
    infer,
    refusal,
)

SAMPLE_ROWS = 500  # enough to see a file's status words, cheap on any file


def read_sample(
    path: Path, encoding: str | None = None, delimiter: str | None = None
) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the first rows of a CSV file, as the importer would read them."""
    encoding = encoding or detect_encoding(path)
    delimiter = delimiter or detect_delimiter(path, encoding)
    with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise SourceError(f"{path}: the file is empty (no header row)")
        rows = [dict(zip(header, values, strict=False)) for values in itertools.islice(
            reader, SAMPLE_ROWS
        )]  # fmt: skip
    return header, rows


def inferred(
    path: Path,
    catalogue: Catalogue,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> tuple[Inference, Mapping]:
    """The inferred mapping of a file; SourceError when nothing identifies a person."""
    header, rows = read_sample(path, encoding, delimiter)
    found = infer(header, rows, catalogue)
    if not found.identifies:
        raise SourceError(f"{path}: {refusal(header)}")
    columns: dict[str, FieldMap] = {}
    for column, target in found.columns.items():
        if target == "status" and found.unknown_status_words:
            # Words that are not statuses would quarantine their rows: keep the column
            # as a custom attribute until a mapping says what each word means.
            columns[column] = FieldMap(custom="status_text")
        else:
            columns[column] = FieldMap(field=target)
    return found, Mapping(columns=columns)


def describe(found: Inference) -> list[str]:
    """The inferred mapping in words, shown before anything is imported."""
    lines = ["No --mapping given; the columns recognised:"]
    for column, target in found.columns.items():
        if target == "status" and found.unknown_status_words:
            words = ", ".join(found.unknown_status_words[:8])
            lines.append(
                f"  {column} -> custom attribute status_text (not statuses: {words}; "
                "assign them in a mapping: leadsync mapping draft)"
            )
        else:
            lines.append(f"  {column} -> {target}")
    if found.unmatched:
        lines.append(f"  not mapped (kept in the raw record): {', '.join(found.unmatched)}")
    return lines


def mapping_draft(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, metavar="FILE"),
    region: str | None = typer.Option(
        None, "--region", metavar="CC", help="Country of phones without a code (e.g. MY)."
    ),
    source: str | None = typer.Option(None, "--source", metavar="NAME", help="Source name."),
    encoding: str | None = typer.Option(None, metavar="NAME", help="Default: detected."),
    delimiter: str | None = typer.Option(None, metavar="CHAR", help="Default: detected."),
) -> None:
    """Print a commented starting mapping for a CSV file (`> mapping.yaml`), from its
    header and a sample of its rows; status words found are listed under `values:`."""
    header, rows = read_sample(file, encoding, delimiter)
    found = infer(header, rows)
    typer.echo(draft(found, source=source, region=region.upper() if region else None), nl=False)
