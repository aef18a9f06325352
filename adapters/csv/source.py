"""CSV files as a lead source: the "import existing customers" path.

Streaming: rows are read and mapped in batches, never the whole file at once. The
cursor is (file hash, last row stored), so an interrupted import of the same file
resumes where it stopped, and a changed file starts over (its unchanged rows are
recognised by content and cost nothing).

Records are found by `_records`, which follows the quoting the way Python's csv reader
does, so that a record's reference is the line it starts on (`leads.csv line 17`,
right after multi-line fields too) and memory stays bounded whatever a file holds: a
field over `FIELD_LIMIT` characters quarantines its record naming the column and the
size, and a record over `RECORD_LIMIT` (an unterminated quote that swallows the rest
of the file) is not kept in memory past that; the rows after it are read as usual.

Lines are decoded one by one: in a file detected as a legacy code page (cp1250,
cp1252), a line that is valid UTF-8 is read as UTF-8 (files appended to by two
programs mix them), and the lines of each kind are named in a warning.
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

import structlog
from charset_normalizer import from_bytes

from adapters.csv.records import (
    FIELD_LIMIT,
    RECORD_LIMIT,
    SAMPLE,
    Feed,
    Lines,
    Record,
    find_records,
    is_legacy,
)
from connector.sdk import Batch, Catalogue, Lead, Mapping, Problem, SourceError

log = structlog.get_logger(__name__)

# Encodings spreadsheets in our markets export: Excel on Polish Windows writes cp1250,
# on Western Windows cp1252; everything else is UTF-8 (with or without a BOM).
_CANDIDATES = ["cp1250", "cp1252"]


def detect_encoding(path: Path) -> str:
    with path.open("rb") as fh:
        sample = fh.read(SAMPLE)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # the codec reads the BOM and its byte order
    wide = _utf16_without_bom(sample)
    if wide:
        return wide
    try:
        # A cut in the middle of a multi-byte character at the end is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # Lines are decoded one by one (UTF-8 first), so only the lines that are not UTF-8
    # tell which code page the rest is in: a file mixing both is judged by those.
    legacy = [ln for ln in sample.split(b"\n")[:-1] if not _is_utf8(ln)]
    if legacy:
        sample = b"\n".join(legacy)
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


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _utf16_without_bom(sample: bytes) -> str | None:
    """UTF-16 without a BOM: text in our markets is mostly Latin, so every other byte
    is NUL (even positions for big-endian, odd for little-endian)."""
    head = sample[: 4096 - 4096 % 2]
    if len(head) < 4:
        return None
    even, odd = head[0::2].count(0), head[1::2].count(0)
    half = len(head) // 2
    if odd > 0.4 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.4 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


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


def _cut(value: str, always: bool = False) -> str:
    """A value too long to keep whole in a quarantine record: its start, and its size."""
    if len(value) <= FIELD_LIMIT and not always:
        return value
    return f"{value[:1000]}… [{len(value):,} characters; the rest is in the file]"


# The reader itself must not refuse a field before `_lead` can name it (its default
# limit is 128 KiB); RECORD_LIMIT still bounds what one record holds.
csv.field_size_limit(max(csv.field_size_limit(), RECORD_LIMIT + 1))


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

    def _dialect(self, path: Path) -> tuple[str, str, bool]:
        """(encoding, delimiter, whether a line that is valid UTF-8 is read as UTF-8)."""
        given = self.encoding or self.mapping.encoding
        encoding = given or detect_encoding(path)
        if codecs.lookup(encoding).name == "utf-8-sig":
            encoding = "utf-8"  # the BOM is dropped by the reader either way
        delimiter = self.delimiter or self.mapping.delimiter or detect_delimiter(path, encoding)
        # A detected code page may be wrong for some lines (files appended to by two
        # programs): UTF-8 is tried first on each. A code page the admin gave is trusted.
        return encoding, delimiter, given is None and is_legacy(encoding)

    def records_of(self, path: Path) -> Iterator[tuple[Record, list[list[str]]]]:
        """Each record of the file with its values (none when it is over the limit)."""
        encoding, delimiter, fallback = self._dialect(path)
        lines = Lines(path, encoding, fallback, encoding)
        # One csv reader for the file, handed one record's text at a time (a reader per
        # record cost a third of the reading time).
        feed = Feed()
        reader = csv.reader(feed, delimiter=delimiter)
        try:
            for record in find_records(iter(lines), delimiter):
                feed.text = record.text if record.text is not None else record.prefix
                try:
                    values = list(reader)
                except csv.Error as exc:  # never expected (_scan follows csv): never fatal
                    record.error = str(exc)
                    values = [[record.prefix]]
                yield record, values or [[]]
        finally:
            if lines.utf8_lines and lines.legacy_lines:
                log.warning(
                    "csv.mixed_encoding",
                    file=path.name,
                    encoding=encoding,
                    utf8_lines=len(lines.utf8_lines),
                    legacy_lines=len(lines.legacy_lines),
                    first_legacy_lines=lines.legacy_lines[:20],
                    first_utf8_lines=lines.utf8_lines[:20],
                    reason=f"lines valid as UTF-8 were read as UTF-8, the others as {encoding}",
                )

    def _header(self, path: Path) -> list[str]:
        return self._checked_header(path, next(self.records_of(path), None))

    def _checked_header(
        self, path: Path, first: tuple[Record, list[list[str]]] | None
    ) -> list[str]:
        header = first[1][0] if first is not None and first[0].text is not None else []
        if first is not None and first[0].text is None:
            raise SourceError(f"{path}: the header row is over {RECORD_LIMIT:,} characters")
        if not header:
            raise SourceError(f"{path}: the file is empty (no header row)")
        header = [h.strip() for h in header]
        header[0] = header[0].removeprefix("\ufeff").strip()
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
        found = self.records_of(path)  # one pass: the header is its first record
        header = self._checked_header(path, next(found, None))
        sha = file_sha256(path)
        done = cursor["row"] if isinstance(cursor, dict) and cursor.get("sha256") == sha else 0
        records: list[Lead] = []
        # The cursor counts records (row 1 is the header); references give the line a
        # record starts on, which a person can find in an editor.
        row_no = 1
        blank = 0
        width = len(header)
        for record, parsed in found:
            for values in parsed:
                row_no += 1
                if row_no <= done:
                    continue
                if not any(v.strip() for v in values):
                    blank += 1  # nothing to ingest, but counted in the summary
                    continue
                records.append(self._lead(path, header, width, record, values))
                if len(records) >= self.batch_size:
                    yield Batch(records, {"sha256": sha, "row": row_no}, blank)
                    records, blank = [], 0
        if records or row_no > done:
            yield Batch(records, {"sha256": sha, "row": row_no}, blank)

    def _lead(
        self, path: Path, header: list[str], width: int, record: Record, values: list[str]
    ) -> Lead:
        oversized = record.text is None
        problems: list[Problem] = []
        if record.error is not None:
            problems.append(Problem(header[0], f"the record cannot be read as CSV: {record.error}"))
        elif oversized:
            # Only the start of the record was kept: its last value is the one cut off.
            column = header[min(len(values), width) - 1] if values else header[0]
            problems.append(
                Problem(
                    column,
                    f"the record runs to {record.size:,} characters from here (more than "
                    f"{RECORD_LIMIT:,}): a quote opened and never closed, or a value "
                    "that is not a lead's; fix the file and import it again",
                )
            )
            values = [*values[:-1], _cut(values[-1], always=True)] if values else values
        elif max(map(len, values), default=0) > FIELD_LIMIT:
            for column, value in zip(header, values, strict=False):
                if len(value) > FIELD_LIMIT:
                    problems.append(
                        Problem(
                            column,
                            f"holds {len(value):,} characters, more than the "
                            f"{FIELD_LIMIT:,} a field may; shorten it and import again",
                        )
                    )
            if problems:
                values = [_cut(v) for v in values]
        row: dict[str, Any] = dict(zip(header, values, strict=False))
        if len(values) > width:
            row["__extra__"] = values[width:]  # kept, so nothing is lost
        lead = self.mapping.apply(
            row,
            source=self.name,
            ref=f"{path.name} line {record.line}",
            catalogue=self.catalogue,
            region=self.region,
        )
        swallowing = swallowed_rows(row)
        if swallowing and not oversized:
            lead.problems.append(swallowing)
        lead.problems.extend(problems)
        return lead

    def count_rows(self) -> int:
        """Data rows in all files, cheaply (for a progress bar's total)."""
        total = 0
        for path in self.paths:
            with path.open("rb") as fh:
                total += sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
            total -= 1
        return max(total, 0)
