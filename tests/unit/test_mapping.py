from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import ConfigError
from connector.mapping import Mapping, load_mapping
from connector.statuses import LOST, NEW, WON, Catalogue

MAPPING = Mapping.model_validate(
    {
        "default_region": "PL",
        "columns": {
            "E-mail": "email",
            "Imię i nazwisko": {"field": "full_name"},
            "Họ tên": {"field": "full_name", "order": "family_first"},
            "Status": {
                "field": "status",
                "values": {"Nowy": "New", "Przegrany": "Lost", "Menang": "Won"},
            },
            "Budżet": {"custom": "budget", "type": "number"},
            "Zgoda": {"custom": "consent", "type": "boolean"},
        },
    }
)


def apply(row: dict[str, str]):  # type: ignore[no-untyped-def]
    return MAPPING.apply(row, source="s", ref="row 2", catalogue=Catalogue.default())


def test_columns_values_and_types() -> None:
    lead = apply({"E-mail": " a@x.com ", "Status": "nowy", "Budżet": "12 500,50", "Zgoda": "tak"})
    assert lead.fields == {"email": "a@x.com"}
    assert lead.status == NEW
    assert lead.custom == {"budget": 12500.5, "consent": True}
    assert lead.region == "PL"
    assert lead.raw["Budżet"] == "12 500,50"
    assert apply({"Status": "Przegrany"}).status == LOST
    assert apply({"Status": "MENANG"}).status == WON
    assert apply({"Status": "Won"}).status == WON  # canonical names work without a map


def test_full_name_orders() -> None:
    assert apply({"Imię i nazwisko": "Anna Maria Nowak"}).fields == {
        "first_name": "Anna Maria",
        "last_name": "Nowak",
    }
    assert apply({"Họ tên": "Nguyễn Thị Minh Khai"}).fields == {
        "first_name": "Thị Minh Khai",
        "last_name": "Nguyễn",
    }


def test_problems_are_field_issues_with_a_category_and_the_value_apart() -> None:
    lead = apply({"Status": "Może", "Budżet": "dużo"})
    assert [(p.field, p.kind, p.value) for p in lead.problems] == [
        ("status", "field", "Może"),
        ("budget", "field", "dużo"),
    ]
    assert "add it to the mapping's values" in lead.problems[0].reason
    # Reasons are categories: summaries count them, so they never quote the value.
    assert all(p.value not in p.reason for p in lead.problems if p.value)


def test_invalid_mapping_file_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("columns:\n  E-mail: email\n  Phone: telephone\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_mapping(path)
    assert f"{path}:3: columns.Phone" in str(err.value)
    assert "telephone" in str(err.value)
