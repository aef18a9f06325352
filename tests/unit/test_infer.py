"""A first mapping from a header: English, Malay, Polish and Vietnamese column names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.csv.draft import inferred
from connector.infer import draft, fold, infer
from connector.mapping import Mapping
from connector.ports import SourceError
from connector.statuses import Catalogue


def test_fold_ignores_case_diacritics_and_punctuation() -> None:
    assert fold(" E-Mail ") == fold("e mail") == "e mail"
    assert fold("Số điện thoại") == "so dien thoai"
    assert fold("Imię i nazwisko") == "imie i nazwisko"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (["Email", "Phone", "Name", "City", "Company", "Status"],
         ["email", "phone", "full_name", "city", "company", "status"]),
        (["Emel", "No. Telefon", "Nama", "Bandar", "Syarikat"],
         ["email", "phone", "full_name", "city", "company"]),
        (["E-mail", "Telefon", "Imię i nazwisko", "Miasto", "Firma"],
         ["email", "phone", "full_name", "city", "company"]),
        (["Email", "Số điện thoại", "Họ tên", "Thành phố", "Công ty", "Trạng thái"],
         ["email", "phone", "full_name", "city", "company", "status"]),
        (["First name", "Last name", "E-mail"], ["first_name", "last_name", "email"]),
        (["Miasto / City", "Telefon (Phone)"], ["city", "phone"]),
    ],
)  # fmt: skip
def test_common_headers_are_recognised(header: list[str], expected: list[str]) -> None:
    assert list(infer(header).columns.values()) == expected


def test_parts_of_a_name_win_over_a_full_name_and_repeats_are_left_alone() -> None:
    found = infer(["Name", "First name", "Last name", "Email", "E-mail", "Notes"])
    assert found.columns == {"First name": "first_name", "Last name": "last_name", "Email": "email"}
    assert set(found.unmatched) == {"Name", "E-mail", "Notes"}


def test_nothing_identifying_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Nama,Bandar\nAli,Ipoh\n", encoding="utf-8")
    assert not infer(["Nama", "Bandar"]).identifies
    with pytest.raises(SourceError, match="no column identifies a person"):
        inferred(path, Catalogue.default())


def test_unknown_status_words_are_kept_as_text_until_a_mapping_assigns_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("Emel,Status\na@x.com,Baru\nb@x.com,Won\nc@x.com,Baru\n", encoding="utf-8")
    found, mapping = inferred(path, Catalogue.default())
    assert found.status_words == ["Baru", "Won"] and found.unknown_status_words == ["Baru"]
    assert mapping.columns["Status"].custom == "status_text"


def test_the_draft_lists_status_words_and_validates_once_they_are_assigned() -> None:
    found = infer(
        ["Họ tên", "Emel", "Trạng thái", "Budżet"],
        [{"Trạng thái": "Mới"}, {"Trạng thái": "Won"}, {"Trạng thái": "Mới"}],
    )
    text = draft(found, source="sheet", region="VN")
    data = yaml.safe_load(text)
    assert data["default_region"] == "VN" and data["source"] == "sheet"
    assert data["columns"]["Trạng thái"]["values"] == {"Mới": "", "Won": "Won"}
    assert "# Budżet: {custom: budzet}" in text  # unrecognised, offered commented out
    data["columns"]["Trạng thái"]["values"]["Mới"] = "New"
    mapping = Mapping.model_validate(data)
    assert mapping.columns["Họ tên"].field == "full_name"
