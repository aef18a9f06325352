from __future__ import annotations

from pathlib import Path

import pytest

from adapters.csv.source import CsvSource, detect_delimiter, detect_encoding
from connector.mapping import Mapping
from connector.ports import SourceError

MAPPING = Mapping.model_validate(
    {"columns": {"Imię": "first_name", "E-mail": "email", "Miasto": "city"}}
)


def write(path: Path, text: str, encoding: str) -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def source(path: Path, **kw: object) -> CsvSource:
    return CsvSource(name="t", paths=[path], mapping=MAPPING, mapping_path=None, **kw)  # type: ignore[arg-type]


ROWS = "Imię;E-mail;Miasto\nŁukasz;l@wp.pl;Kraków\nŻaneta;z@wp.pl;Łódź\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1250"])
def test_detects_encoding_and_delimiter(tmp_path: Path, encoding: str) -> None:
    path = write(tmp_path / "f.csv", ROWS, encoding)
    found = detect_encoding(path)
    assert ROWS.encode(encoding).decode(found).lstrip("\ufeff") == ROWS
    assert detect_delimiter(path, found) == ";"
    [batch] = list(source(path).read(str(path), None))
    assert [r.fields["city"] for r in batch.records] == ["Kraków", "Łódź"]
    assert [r.ref for r in batch.records] == ["f.csv line 2", "f.csv line 3"]


def test_cp1252_western(tmp_path: Path) -> None:
    path = write(
        tmp_path / "f.csv", "Imię,E-mail,Miasto\nJosé,j@x.es,Málaga\n".replace("ę", "e"), "cp1252"
    )
    mapping = Mapping.model_validate(
        {"columns": {"Imie": "first_name", "E-mail": "email", "Miasto": "city"}}
    )
    src = CsvSource(name="t", paths=[path], mapping=mapping, mapping_path=None)
    [batch] = list(src.read(str(path), None))
    assert batch.records[0].fields["city"] == "Málaga"


def test_missing_and_duplicate_columns_are_clear(tmp_path: Path) -> None:
    path = write(tmp_path / "f.csv", "Imię,Email\nA,a@x.com\n", "utf-8")
    with pytest.raises(SourceError, match=r"does not have: \['E-mail', 'Miasto'\]"):
        source(path).check()
    dup = write(tmp_path / "d.csv", "Imię,E-mail,Miasto,Miasto\n", "utf-8")
    with pytest.raises(SourceError, match="duplicate column names"):
        source(dup).check()


def test_a_file_without_a_header_is_named_without_printing_its_first_row(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "f.csv", "Łukasz,lukasz@wp.pl,Kraków\n", "utf-8")
    with pytest.raises(SourceError, match="no header row") as err:
        source(path).check()
    assert "lukasz@wp.pl" not in str(err.value) and "Łukasz" not in str(err.value)


def test_cursor_resumes_same_file_and_restarts_changed_file(tmp_path: Path) -> None:
    lines = "".join(f"P{i};p{i}@x.com;C\n" for i in range(10))
    path = write(tmp_path / "f.csv", "Imię;E-mail;Miasto\n" + lines, "utf-8")
    src = source(path, batch_size=4)
    batches = list(src.read(str(path), None))
    assert [len(b.records) for b in batches] == [4, 4, 2]
    cursor = batches[0].cursor
    assert cursor["row"] == 5
    rest = list(src.read(str(path), cursor))
    assert sum(len(b.records) for b in rest) == 6
    assert rest[0].records[0].ref == "f.csv line 6"
    path.write_text("Imię;E-mail;Miasto\n" + lines + "New;n@x.com;C\n", encoding="utf-8")
    assert sum(len(b.records) for b in src.read(str(path), cursor)) == 11


def test_undecodable_row_is_reported_with_its_row(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes("Imię;E-mail;Miasto\n".encode() + b"A;a@x.com;K\xb3\xf3d\xbc\n")
    with pytest.raises(SourceError, match="not valid utf-8 at line 2"):
        list(source(path, encoding="utf-8").read(str(path), None))


def test_a_quote_never_closed_quarantines_the_record_that_swallowed_rows(tmp_path: Path) -> None:
    # `"Kraków` opens a quote that the next stray quote closes, two lines later: a CSV
    # reader returns Ola's and Ewa's rows inside Ania's city. They must not vanish.
    text = (
        "Imię,E-mail,Miasto\n"
        'Ania,a@wp.pl,"Kraków\n'
        "Ola,o@wp.pl,Gdańsk\n"
        'Ewa,"e@wp.pl",Łódź\n'
        "Iza,i@wp.pl,Poznań\n"
        'Notka,n@wp.pl,"Wrocław\nul. Długa 5"\n'  # a real multi-line field is fine
    )
    path = write(tmp_path / "f.csv", text, "utf-8")
    [batch] = list(source(path).read(str(path), None))
    by_ref = {r.ref: r for r in batch.records}
    assert [str(p) for p in by_ref["f.csv line 2"].problems] == [
        'Miasto: runs over several lines that look like rows of their own: a quote (") '
        "opened here is never closed; fix it and import the file again"
    ]
    assert "Ola,o@wp.pl,Gdańsk" in by_ref["f.csv line 2"].raw["Miasto"]  # kept for quarantine
    assert (
        not by_ref["f.csv line 5"].problems and by_ref["f.csv line 5"].fields["email"] == "i@wp.pl"
    )
    assert not by_ref["f.csv line 6"].problems  # Notka's address spans two lines legitimately
    # Retrying the quarantined record with a new mapping cannot fix the file's quoting.
    from adapters.csv import CsvPlugin

    mapping = tmp_path / "m.yaml"
    mapping.write_text("columns: {Imię: first_name, E-mail: email, Miasto: city}\n")
    again = CsvPlugin().remap(by_ref["f.csv line 2"].raw, {"mapping": str(mapping)}, "f.csv line 2")
    assert [p.field for p in again.problems] == ["Miasto"]


def test_references_name_the_file_when_an_import_has_several(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", ROWS, "utf-8")
    b = write(tmp_path / "b.csv", ROWS, "utf-8")
    src = CsvSource(name="t", paths=[a, b], mapping=MAPPING, mapping_path=None)
    refs = [r.ref for p in (a, b) for batch in src.read(str(p), None) for r in batch.records]
    assert refs == ["a.csv line 2", "a.csv line 3", "b.csv line 2", "b.csv line 3"]
