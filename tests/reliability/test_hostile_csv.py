"""Hostile and careless CSV files: huge fields, unterminated quotes that swallow more
than 128 KiB, BOMs, UTF-16, files mixing UTF-8 and cp1250, multi-line fields before
the record a reference names. Each valid record is ingested, each invalid one is
quarantined with a reason, and the import goes on."""

from __future__ import annotations

import codecs
import csv
import io
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.csv import records as csv_records
from adapters.csv import source as csv_source
from adapters.csv.source import FIELD_LIMIT, RECORD_LIMIT, CsvSource, detect_encoding
from connector.mapping import Mapping
from connector.model import Lead
from connector.pipeline import Pipeline
from connector.store import Store
from connector.store.tables import contacts, quarantine

MAPPING = Mapping.model_validate(
    {"columns": {"email": "email", "name": "full_name", "notes": {"custom": "notes"}}}
)


def source(path: Path, **kw: object) -> CsvSource:
    return CsvSource(name="t", paths=[path], mapping=MAPPING, mapping_path=None, **kw)  # type: ignore[arg-type]


def leads(path: Path, **kw: object) -> list[Lead]:
    return [r for b in source(path, **kw).read(str(path), None) for r in b.records]


def test_a_huge_field_quarantines_its_record_naming_column_and_size_and_the_import_goes_on(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "huge.csv"
    big = "x" * (FIELD_LIMIT + 10)
    path.write_text(
        f"email,name,notes\na@example.com,A,short\nb@example.com,B,{big}\nc@example.com,C,ok\n"
    )
    stats = Pipeline(store, workers=0).run(source(path))
    assert (stats.rows, stats.created, stats.quarantined) == (3, 2, 1)
    with store.engine.connect() as conn:
        [(ref, reason, raw)] = conn.execute(
            select(quarantine.c.ref, quarantine.c.reason, quarantine.c.raw)
        ).all()
        emails = set(conn.execute(select(contacts.c.email)).scalars())
    assert ref == "huge.csv line 3"
    assert "notes" in reason and f"{FIELD_LIMIT + 10:,} characters" in reason
    assert len(raw["notes"]) < 2000  # the quarantine row holds its start, not all of it
    assert emails == {"a@example.com", "c@example.com"}


def test_an_unterminated_quote_swallowing_more_than_128_kib_is_quarantined(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (csv_records, csv_source):  # the reader, and its messages
        monkeypatch.setattr(module, "RECORD_LIMIT", 256 * 1024)
    rows = "".join(f"p{i}@example.com,P{i},note {i}\n" for i in range(12_000))  # ~380 KB
    path = tmp_path / "quote.csv"
    path.write_text(
        f'email,name,notes\nfirst@example.com,First,ok\nbad@example.com,Bad,"20\n{rows}'
    )
    stats = Pipeline(store, workers=0).run(source(path))
    # everything after the quote is one record: quarantined, not imported, not fatal
    assert (stats.rows, stats.created, stats.quarantined) == (2, 1, 1)
    with store.engine.connect() as conn:
        [(ref, field, reason)] = conn.execute(
            select(quarantine.c.ref, quarantine.c.field, quarantine.c.reason)
        ).all()
    assert (ref, field) == ("quote.csv line 3", "notes")
    assert "quote" in reason and "characters" in reason


def test_a_line_bigger_than_the_record_limit_is_never_held_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (csv_records, csv_source):  # the reader, and its messages
        monkeypatch.setattr(module, "RECORD_LIMIT", 100_000)
    path = tmp_path / "line.csv"
    path.write_text("email,name,notes\n" + "a@b.co,A," + "y" * 3_000_000 + "\nc@d.co,C,ok\n")
    found = leads(path)
    assert [r.ref for r in found] == ["line.csv line 2", "line.csv line 3"]
    assert [p.field for p in found[0].problems] == ["notes"]
    assert len(found[0].raw["notes"]) < 2000
    assert not found[1].problems


def test_references_give_the_line_a_record_starts_on_after_multiline_fields(
    tmp_path: Path,
) -> None:
    path = tmp_path / "multi.csv"
    path.write_text(
        'email,name,notes\na@b.co,A,"one\ntwo\nthree"\nb@b.co,B,x\n\nc@b.co,C,"4\n5"\nd@b.co,D,y\n'
    )
    assert [r.ref for r in leads(path)] == [
        "multi.csv line 2",
        "multi.csv line 5",
        "multi.csv line 7",
        "multi.csv line 9",
    ]


def test_an_explicit_utf8_on_a_file_with_a_bom_reads_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(codecs.BOM_UTF8 + "email,name,notes\na@b.co,Zoë,x\n".encode())
    [lead] = leads(path, encoding="utf-8")
    assert lead.fields["email"] == "a@b.co" and not lead.problems


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_are_detected_and_read(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes(
        'email,name,notes\na@b.co,Zoë Łódź,x\nb@b.co,B,"two\nlines"\n'.encode(encoding)
    )
    assert detect_encoding(path).startswith(encoding[:6])
    found = leads(path)
    assert [r.raw["name"] for r in found] == ["Zoë Łódź", "B"]
    assert found[1].raw["notes"] == "two\nlines"
    assert [r.ref for r in found] == ["wide.csv line 2", "wide.csv line 3"]


def test_a_file_mixing_utf8_and_cp1250_mangles_no_utf8_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"email,name,notes\n"
        + "a@b.co,Zoë,x\n".encode()
        + "b@b.co,Łukasz Żółć,x\n".encode("cp1250")
        + "c@b.co,Ðặng Thị Hoa,x\n".encode()
    )
    assert detect_encoding(path) == "cp1250"
    found = leads(path)
    assert [r.raw["name"] for r in found] == ["Zoë", "Łukasz Żółć", "Ðặng Thị Hoa"]
    # stdout with structlog's defaults, stderr once a test has run logs.configure().
    captured = capsys.readouterr()
    warning = captured.out + captured.err
    # Key=value from the console renderer, JSON once the daemon's logging was set up.
    assert "csv.mixed_encoding" in warning
    assert re.search(r"first_legacy_lines\W{1,4}\[3\]", warning), warning


# -- fuzzing -------------------------------------------------------------------------

_CELL = st.text(alphabet=st.sampled_from(list('ab,;"\n\r é\x00Ł')), max_size=12)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.lists(_CELL, min_size=3, max_size=3), max_size=6))
def test_well_formed_files_read_exactly_as_csv_writes_them(
    tmp_path: Path, rows: list[list[str]]
) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["email", "name", "notes"])
    writer.writerows(rows)
    path = tmp_path / "fuzz.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    found = leads(path, encoding="utf-8", delimiter=",")
    expected = [r for r in rows if any(v.strip() for v in r)]
    assert [[lead.raw[k] for k in ("email", "name", "notes")] for lead in found] == expected


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.binary(max_size=300)
    | st.text(alphabet=st.sampled_from(list('a,"\r\n\x00é'))).map(str.encode),
    header=st.sampled_from([b"email,name,notes\n", b"email,name,notes\r", b""]),
)
def test_any_bytes_are_read_or_refused_with_a_source_error(
    tmp_path: Path, raw: bytes, header: bytes
) -> None:
    from connector.ports import SourceError

    path = tmp_path / "bytes.csv"
    path.write_bytes(header + raw)
    try:
        found = leads(path)
    except SourceError:
        return
    for lead in found:
        assert lead.ref.startswith("bytes.csv line ")
        # records are found as csv reads them, so csv never refuses one
        assert not any("cannot be read as CSV" in p.reason for p in lead.problems)


def test_the_limits_are_what_the_docs_say() -> None:
    assert FIELD_LIMIT == 131_072 and RECORD_LIMIT == 1 << 20


def test_old_mac_line_ends_are_read_as_lines(tmp_path: Path) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(b'email,name,notes\ra@b.co,A,"x\ry"\rb@b.co,B,z\r')
    found = leads(path)
    assert [r.raw["notes"] for r in found] == ["x\ry", "z"]
    assert [r.ref for r in found] == ["mac.csv line 2", "mac.csv line 4"]
