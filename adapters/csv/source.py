"""CSV files as a lead source: the "import existing customers" path.

Streaming: rows are read and mapped in batches, never the whole file at once. The
cursor is (file hash, last row stored), so an interrupted import of the same file
resumes where it stopped, and a changed file starts over (its unchanged rows are
recognised by content and cost nothing).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charset_normalizer import from_bytes

from connector.mapping import Mapping
from connector.model import Lead, Problem
from connector.ports import Batch, SourceError
from connector.statuses import Catalogue

_SAMPLE = 1 << 20  # bytes looked at to detect encoding and delimiter
# Encodings spreadsheets in our markets export: Excel on Polish Windows writes cp1250,
# on Western Windows cp1252; everything else is UTF-8 (with or without a BOM).
_CANDIDATES = ["cp1250", "cp1252"]


def detect_encoding(path: Path) -> str:
    with path.open("rb") as fh:
        sample = fh.read(_SAMPLE)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        # A cut in the middle of a multi-byte character at the end is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # The two code pages share most letters; they differ in what Polish letters become
    # under the wrong one: symbols inside words (`Łódź` read as cp1252 is `£ódŸ`,
    # `Żaneta` is `¯aneta`). Fewest symbols wins; charset-normalizer breaks ties.
    scores = {enc: _symbols(sample, enc) for enc in _CANDIDATES}
    fits = {enc: n for enc, n in scores.items() if n is not None}
    if fits:
        fewest = min(fits.values())
        tied = [enc for enc, n in fits.items() if n == fewest]
        if len(tied) == 1:
            return tied[0]
    best = from_bytes(sample, cp_isolation=_CANDIDATES).best()
    if best is None:
        raise SourceError(f"{path}: cannot tell the file's encoding; give it in the mapping")
    return str(best.encoding)


def _symbols(sample: bytes, encoding: str) -> int | None:
    """Non-ASCII characters that are not letters when `sample` is read as `encoding`
    (None if it cannot be read so at all)."""
    try:
        text = sample.decode(encoding)
    except UnicodeDecodeError:
        return None
    return sum(1 for c in text if ord(c) > 127 and unicodedata.category(c)[0] != "L")


def detect_delimiter(path: Path, encoding: str) -> str:
    with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
        sample = fh.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def swallowed_rows(row: dict[str, Any]) -> Problem | None:
    """A record that holds other records: a quote opened and never closed (`"20` in a
    points column) makes a CSV reader take every following line, up to the next stray
    quote, as part of that one field. Such a field has a line break followed by a line
    with as many delimiters as a row has. Read as it is, the swallowed people would be
    lost inside one contact's attribute; the record is quarantined instead, naming the
    column, and a fixed file imports them all."""
    width = len([k for k in row if k != "__extra__"])
    if width < 2:
        return None
    for column, value in row.items():
        if not isinstance(value, str) or "\n" not in value:
            continue
        for line in value.splitlines()[1:]:
            if any(line.count(d) >= width - 1 for d in _DELIMITERS):
                return Problem(
                    str(column),
                    "runs over several lines that look like rows of their own: a quote "
                    '(") opened here is never closed; fix it and import the file again',
                )
    return None


_DELIMITERS = ",;\t|"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _not_encoded(path: Path, encoding: str, row: int, exc: UnicodeDecodeError) -> SourceError:
    # Text is decoded in blocks, so the row is where reading stood, not exact.
    return SourceError(
        f"{path}: not valid {encoding} at or after row {row} ({exc.reason}); "
        "give the right encoding in the mapping or with --encoding"
    )


@dataclass
class CsvSource:
    """One or more CSV files read through one mapping."""

    name: str
    paths: list[Path]
    mapping: Mapping
    mapping_path: Path | None
    catalogue: Catalogue = field(default_factory=Catalogue.default)
    region: str | None = None
    batch_size: int = 5000
    encoding: str | None = None
    delimiter: str | None = None

    def check(self) -> None:
        for path in self.paths:
            if not path.is_file():
                raise SourceError(f"{path}: no such file")
            self._header(path)

    def streams(self) -> list[str]:
        return [str(p.resolve()) for p in self.paths]

    def context(self) -> dict[str, Any]:
        return {
            "kind": "csv",
            "source": self.name,
            "mapping": str(self.mapping_path.resolve()) if self.mapping_path else None,
            "region": self.region,
        }

    def _dialect(self, path: Path) -> tuple[str, str]:
        encoding = self.encoding or self.mapping.encoding or detect_encoding(path)
        delimiter = self.delimiter or self.mapping.delimiter or detect_delimiter(path, encoding)
        return encoding, delimiter

    def _header(self, path: Path) -> list[str]:
        encoding, delimiter = self._dialect(path)
        try:
            with path.open("r", encoding=encoding, newline="") as fh:
                header = next(csv.reader(fh, delimiter=delimiter), None)
        except UnicodeDecodeError as exc:
            raise _not_encoded(path, encoding, 1, exc) from None
        if not header:
            raise SourceError(f"{path}: the file is empty (no header row)")
        header = [h.strip() for h in header]
        dupes = sorted({h for h in header if header.count(h) > 1 and h})
        if dupes:
            raise SourceError(f"{path}: duplicate column names {dupes}; rename them")
        missing = [c for c in self.mapping.fields() if c not in header]
        if missing and len(missing) == len(self.mapping.fields()):
            # Likely no header at all: the first row is a person's data, not to be shown.
            raise SourceError(
                f"{path}: the first row has none of the mapping's columns {missing}: "
                "the file seems to have no header row; add one"
            )
        if missing:
            raise SourceError(
                f"{path}: the mapping names columns the file does not have: {missing}; "
                f"the file has {header}"
            )
        return header

    def read(self, stream: str, cursor: Any) -> Iterator[Batch]:
        path = Path(stream)
        header = self._header(path)
        encoding, delimiter = self._dialect(path)
        sha = file_sha256(path)
        done = cursor["row"] if isinstance(cursor, dict) and cursor.get("sha256") == sha else 0
        records: list[Lead] = []
        row_no = 1
        blank = 0
        # Several files go through one import: a reference names the file, so "row 5"
        # of a.csv and of b.csv are told apart in quarantine.
        prefix = f"{path.name} " if len(self.paths) > 1 else ""
        try:
            with path.open("r", encoding=encoding, newline="") as fh:
                reader = csv.reader(fh, delimiter=delimiter)
                next(reader, None)
                width = len(header)
                for values in reader:
                    row_no += 1
                    if row_no <= done:
                        continue
                    if not any(v.strip() for v in values):
                        blank += 1  # nothing to ingest, but counted in the summary
                        continue
                    row = dict(zip(header, values, strict=False))
                    if len(values) > width:
                        row["__extra__"] = values[width:]  # kept, so nothing is lost
                    lead = self.mapping.apply(
                        row,
                        source=self.name,
                        ref=f"{prefix}row {row_no}",
                        catalogue=self.catalogue,
                        region=self.region,
                    )
                    swallowing = swallowed_rows(row)
                    if swallowing:
                        lead.problems.append(swallowing)
                    records.append(lead)
                    if len(records) >= self.batch_size:
                        yield Batch(records, {"sha256": sha, "row": row_no}, blank)
                        records, blank = [], 0
        except UnicodeDecodeError as exc:
            raise _not_encoded(path, encoding, row_no + 1, exc) from None
        if records or row_no > done:
            yield Batch(records, {"sha256": sha, "row": row_no}, blank)

    def count_rows(self) -> int:
        """Data rows in all files, cheaply (for a progress bar's total)."""
        total = 0
        for path in self.paths:
            with path.open("rb") as fh:
                total += sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
            total -= 1
        return max(total, 0)
