"""Graph lead objects to leads: several answers, bad values and Meta's test leads."""

from __future__ import annotations

from adapters.facebook.leads import DEFAULT_MAPPING, to_lead
from connector.identity import prepare
from connector.pipeline import identifies
from connector.statuses import Catalogue


def graph_lead(*answers: tuple[str, list[str]]) -> dict[str, object]:
    return {
        "id": "1234567890123456",
        "created_time": "2026-11-30T10:00:00+0000",
        "field_data": [{"name": k, "values": v} for k, v in answers],
    }


def lead(*answers: tuple[str, list[str]]):  # type: ignore[no-untyped-def]
    return to_lead(
        graph_lead(*answers),
        source="facebook",
        mapping=DEFAULT_MAPPING,
        catalogue=Catalogue.default(),
        region="MY",
    )


def test_a_good_email_and_an_invalid_phone_make_a_contact_with_a_field_issue() -> None:
    record = prepare(lead(("email", ["siti@gmail.com"]), ("phone_number", ["+60 1"])))
    assert identifies(record)
    assert record.attrs["email"] == "siti@gmail.com" and "phone" not in record.attrs
    [problem] = record.problems
    assert (problem.field, problem.kind, problem.value) == ("phone", "field", "+60 1")


def test_several_answers_keep_the_first_valid_and_the_others() -> None:
    got = lead(("email", ["not an email", "siti@gmail.com", "s@x.my"]))
    assert got.fields["email"] == "siti@gmail.com"
    assert got.custom["emails"] == ["not an email", "s@x.my"]


def test_a_vietnamese_full_name_is_split_family_name_first() -> None:
    got = lead(("full_name", ["Nguyễn Văn Hùng"]), ("country", ["VN"]), ("email", ["h@x.vn"]))
    assert (got.fields["first_name"], got.fields["last_name"]) == ("Văn Hùng", "Nguyễn")
    assert got.custom["full_name"] == "Nguyễn Văn Hùng"


def test_a_test_lead_is_identified_by_its_lead_id() -> None:
    got = lead(
        ("email", ["test@fb.com"]),
        ("full_name", ["<test lead: dummy data for full_name>"]),
        ("phone_number", ["<test lead: dummy data for phone_number>"]),
    )
    record = prepare(got)
    assert identifies(record) and record.problems == []
    assert record.keys == ["ext:facebook:test-lead:1234567890123456"]
    assert got.custom == {"is_test": True, "emails": ["test@fb.com"]}
