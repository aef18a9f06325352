"""Finding the records of a CSV file: decoded line by line, grouped the way Python's
csv reader groups them, in bounded memory.

`find_records` follows the quoting (`_scan`, with a C regex for the common whole-line
record) so each record knows the line it starts on, and a record over `RECORD_LIMIT`
characters is measured, not kept. `Lines` decodes: wide encodings (UTF-16/32, old-Mac
\\r files) as text; others line by line, with UTF-8 tried first in a legacy code page.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from connector.sdk import SourceError

SAMPLE = 1 << 20  # bytes looked at to detect encoding, delimiter and line ends
FIELD_LIMIT = 131_072
"""Characters a field may hold (csv's own default limit); a longer one quarantines its
record, naming the column and the size."""
RECORD_LIMIT = 1 << 20
"""Characters of one record kept in memory; past it the record is only measured."""
_PIECE = 64 * 1024  # longest piece of a line read at once
_WIDE = ("utf-16", "utf-32")  # not ASCII-compatible: read as text, not line by line


def not_encoded(path: Path, encoding: str, line: int, exc: UnicodeDecodeError) -> SourceError:
    return SourceError(
        f"{path}: not valid {encoding} at line {line} ({exc.reason}); "
        "give the right encoding in the mapping or with --encoding"
    )


def is_legacy(encoding: str) -> bool:
    """A single-byte code page (cp1250, cp1252, latin-1, ...), not a UTF."""
    name = codecs.lookup(encoding).name
    return not name.startswith(("utf", "mbcs")) and codecs.lookup(encoding).name not in ("ascii",)


_LONE_CR = re.compile(r"(?<=\r)(?!\n)(?=.)", re.DOTALL)  # after a \r alone, not at the end


class Feed:
    """An iterator that yields the one text it was given, then stops until given the
    next (so `list(reader)` parses exactly one record's text)."""

    text: str | None = None

    def __iter__(self) -> Feed:
        return self

    def __next__(self) -> str:
        text, self.text = self.text, None
        if text is None:
            raise StopIteration
        return text


@dataclass(slots=True)
class Piece:
    text: str
    line: int  # the physical line it belongs to (1-based)
    ends_line: bool


class Lines:
    """A file as decoded pieces of lines (at most `_PIECE` bytes of a line at once, so a
    line of 100 MB is never held whole). ASCII-compatible encodings are decoded line by
    line: with a legacy code page, a line that is valid UTF-8 is read as UTF-8 (and
    noted in `utf8_lines` / `legacy_lines`)."""

    def __init__(self, path: Path, encoding: str, fallback: bool, strict_name: str) -> None:
        self.path = path
        self.encoding = encoding
        self.fallback = fallback
        self.strict_name = strict_name
        self.utf8_lines: list[int] = []
        self.legacy_lines: list[int] = []

    def __iter__(self) -> Iterator[Piece]:
        if codecs.lookup(self.encoding).name.startswith(_WIDE) or self._old_mac():
            yield from self._wide()
        else:
            yield from self._narrow()

    def _old_mac(self) -> bool:
        """Lines ended by \\r alone (Excel for Mac 2011): read as text, which splits them
        (bytes are split on \\n only)."""
        with self.path.open("rb") as fh:
            sample = fh.read(SAMPLE)
        return b"\r" in sample and b"\n" not in sample

    def _wide(self) -> Iterator[Piece]:
        line = 1
        with self.path.open("r", encoding=self.encoding, newline="") as fh:
            first = True
            while True:
                try:
                    text = fh.readline(_PIECE)
                except UnicodeDecodeError as exc:
                    raise not_encoded(self.path, self.strict_name, line, exc) from None
                if not text:
                    return
                if first:
                    text, first = text.removeprefix("\ufeff"), False
                ends = text.endswith(("\n", "\r"))
                yield Piece(text, line, ends)
                line += ends

    def _narrow(self) -> Iterator[Piece]:
        line = 1
        utf8 = codecs.lookup(self.encoding).name == "utf-8"
        with self.path.open("rb") as fh:
            first = True
            while True:
                raw = fh.readline(_PIECE)
                if not raw:
                    return
                if first:
                    raw, first = raw.removeprefix(codecs.BOM_UTF8), False
                ends = raw.endswith(b"\n")
                text = self._decode(raw, line, ends, utf8)
                if "\r" in text and _LONE_CR.search(text):
                    # csv ends a line at a \r alone too; bytes were split at \n only.
                    *parts, text = _LONE_CR.split(text)
                    for part in parts:
                        yield Piece(part, line, True)
                        line += 1
                yield Piece(text, line, ends or text.endswith("\r"))
                line += ends or text.endswith("\r")

    def _decode(self, raw: bytes, line: int, whole: bool, utf8: bool) -> str:
        if not whole:
            # A piece of a longer line may cut a character in two; such a line is over
            # the record limit anyway and only measured, not stored.
            return raw.decode("utf-8" if utf8 or self.fallback else self.encoding, "replace")
        if utf8 or self.fallback:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if not self.fallback:
                    raise not_encoded(self.path, self.strict_name, line, exc) from None
            else:
                if self.fallback and not raw.isascii():
                    self.utf8_lines.append(line)
                return text
            self.legacy_lines.append(line)
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise not_encoded(self.path, self.strict_name, line, exc) from None


@dataclass(slots=True)
class Record:
    """One CSV record's text (None when it passed RECORD_LIMIT), where it starts, and
    how many characters it has."""

    text: str | None
    line: int
    size: int
    prefix: str
    error: str | None = None


def find_records(pieces: Iterator[Piece], delimiter: str) -> Iterator[Record]:
    """Group pieces of lines into records the way csv's reader does (default dialect:
    `"` quotes, doubled to escape, a quote opens a field only at its start)."""
    kept: list[str] = []
    size = 0
    start = 0
    in_quotes, field_start = False, True
    for piece in pieces:
        if not kept and size == 0:
            start = piece.line
        size += len(piece.text)
        if size <= RECORD_LIMIT:
            kept.append(piece.text)
        elif kept:
            prefix = "".join(kept)
            kept = [prefix]  # the part kept for the quarantine record
        ended, in_quotes, field_start = _scan(piece.text, in_quotes, field_start, delimiter)
        if ended or (piece.ends_line and not in_quotes):
            text = "".join(kept)
            yield Record(text if size <= RECORD_LIMIT else None, start, size, text)
            kept, size = [], 0
            in_quotes, field_start = False, True
    if kept or size:
        text = "".join(kept)
        yield Record(text if size <= RECORD_LIMIT else None, start, size, text)


@cache
def _whole_line(delimiter: str) -> re.Pattern[str]:
    """A line that is one whole record (every quoted field closed on it), as the csv
    reader reads fields: quoted (`""` escapes; after the closing quote anything up to
    the delimiter), or unquoted (not starting with a quote)."""
    d = re.escape(delimiter)
    # (?!") : a quote right after a closing one would be an escaped quote to csv.
    field = f'(?:"(?:[^"]|"")*"(?!")[^{d}\\r\\n]*|(?:[^"{d}\\r\\n][^{d}\\r\\n]*)?)'
    return re.compile(f"{field}(?:{d}{field})*(?:\\r\\n|\\n|\\r)?")


def _scan(text: str, in_quotes: bool, field_start: bool, delimiter: str) -> tuple[bool, bool, bool]:
    """Follow the quoting through `text`: (record ended here, in a quoted field, at the
    start of a field)."""
    if not in_quotes and '"' not in text:
        return text.endswith(("\n", "\r")), False, False
    if (
        not in_quotes
        and field_start
        and text.endswith(("\n", "\r"))
        and _whole_line(delimiter).fullmatch(text)
    ):
        return True, False, True  # the common case, in C: quoted fields closed on the line
    i, n = 0, len(text)
    while i < n:
        if in_quotes:
            j = text.find('"', i)
            if j < 0:
                return False, True, False
            if j + 1 < n and text[j + 1] == '"':
                i = j + 2
                continue
            in_quotes, field_start, i = False, False, j + 1
            continue
        if field_start and text[i] == '"':
            in_quotes, field_start, i = True, False, i + 1
            continue
        ends = [
            k for k in (text.find(delimiter, i), text.find("\n", i), text.find("\r", i)) if k >= 0
        ]
        if not ends:
            return False, False, False
        k = min(ends)
        if text[k] in "\r\n":
            return True, False, True
        i, field_start = k + 1, True
    return False, in_quotes, field_start
