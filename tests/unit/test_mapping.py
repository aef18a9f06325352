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


def _mapping(**spec: object) -> Mapping:
    return Mapping.model_validate(spec)


def _apply(mapping: Mapping, row: dict[str, object], region: str | None = None):  # type: ignore[no-untyped-def]
    return mapping.apply(row, source="s", ref="row 2", catalogue=Catalogue.default(), region=region)


def test_locale_per_mapping_and_per_column() -> None:
    mapping = _mapping(
        locale="pl_PL",
        columns={
            "Kwota": {"custom": "amount", "type": "number"},
            "USD": {"custom": "usd", "type": "number", "locale": "en_US"},
            "Data": {"custom": "on", "type": "date"},
            "US date": {"custom": "us_on", "type": "date", "dayfirst": False},
        },
    )
    lead = _apply(
        mapping,
        {"Kwota": "1.234,56", "USD": "12,000", "Data": "03.04.2024", "US date": "03/04/2024"},
    )
    assert lead.custom == {
        "amount": 1234.56,
        "usd": 12000,
        "on": "2024-04-03",
        "us_on": "2024-03-04",
    }
    assert lead.problems == []


def test_without_a_locale_an_ambiguous_number_is_a_field_issue() -> None:
    mapping = _mapping(columns={"Amount": {"custom": "amount", "type": "number"}})
    lead = _apply(mapping, {"Amount": "1.234"})
    assert lead.custom == {}
    [problem] = lead.problems
    assert (problem.field, problem.kind, problem.value) == ("amount", "field", "1.234")
    assert "reads two ways" in problem.reason
    # default_region stands for the source's locale when none is given.
    assert _apply(
        _mapping(default_region="DE", columns=mapping.columns), {"Amount": "1.234"}
    ).custom == {"amount": 1234}


@pytest.mark.parametrize("text", ["nan", "inf", "1e999", "9" * 5000])
def test_numbers_that_are_not_are_field_issues(text: str) -> None:
    mapping = _mapping(columns={"Amount": {"custom": "amount", "type": "number"}, "E": "email"})
    lead = _apply(mapping, {"Amount": text, "E": "a@x.com"})
    assert "amount" not in lead.custom
    assert [(p.field, p.kind) for p in lead.problems] == [("amount", "field")]


def test_an_unknown_locale_is_refused_and_the_schema_names_the_keys() -> None:
    with pytest.raises(ValueError, match="unknown locale"):
        _mapping(locale="xx_YY")
    schema = Mapping.model_json_schema()
    for key in ("locale", "decimal", "dayfirst", "name_order"):
        assert key in schema["properties"] and schema["properties"][key]["description"]
    assert "locale" in schema["$defs"]["FieldMap"]["properties"]


def test_several_emails_or_phones_keep_the_first_valid_and_the_others() -> None:
    mapping = _mapping(default_region="PL", columns={"E": "email", "T": "phone"})
    lead = _apply(mapping, {"E": "not-an-email; a@x.com, b@x.com", "T": ["12", "600 700 800"]})
    assert lead.fields == {"email": "a@x.com", "phone": "600 700 800"}
    assert lead.custom == {"emails": ["not-an-email", "b@x.com"], "phones": ["12"]}
    # None valid: the first stays (it becomes a field issue), the others are kept.
    lead = _apply(mapping, {"E": "x; y"})
    assert lead.fields == {"email": "x"} and lead.custom == {"emails": ["y"]}


@pytest.mark.parametrize(
    ("country", "order", "first", "last"),
    [
        ("Việt Nam", None, "Văn Hùng", "Nguyễn"),
        ("HU", None, "Péter", "Nagy"),
        ("Poland", None, "Nagy", "Péter"),
        ("Việt Nam", "given_first", "Nguyễn Văn", "Hùng"),
    ],
)
def test_full_names_split_by_the_records_country_unless_the_mapping_says(
    country: str, order: str | None, first: str, last: str
) -> None:
    mapping = _mapping(columns={"Name": "full_name", "Country": "country"}, name_order=order)
    given = {"Việt Nam": "Nguyễn Văn Hùng"}.get(country, "Nagy Péter")
    lead = _apply(mapping, {"Name": given, "Country": country})
    assert (lead.fields["first_name"], lead.fields["last_name"]) == (first, last)
    assert lead.custom["full_name"] == given  # stored as given


def test_non_latin_names_are_kept() -> None:
    mapping = _mapping(columns={"Name": "full_name", "Country": "country"})
    lead = _apply(mapping, {"Name": "김 민준", "Country": "KR"})
    assert (lead.fields["first_name"], lead.fields["last_name"]) == ("민준", "김")


def test_a_meta_test_lead_is_marked_not_broken() -> None:
    mapping = _mapping(id_column="id", columns={"E": "email", "T": "phone", "City": "city"})
    row = {
        "id": "123",
        "E": "test@fb.com",
        "T": "<test lead: dummy data for phone_number>",
        "City": "<test lead: dummy data for city>",
    }
    lead = _apply(mapping, row)
    assert lead.custom == {"is_test": True, "emails": ["test@fb.com"]}
    # Identified by its id only: test@fb.com is every test lead's address.
    assert lead.fields == {"external_id": "123"} and lead.problems == []
    assert lead.raw["City"] == "<test lead: dummy data for city>"
