"""Field issues on both stores: one bad value never loses a person, and is never lost."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from connector.mapping import Mapping
from connector.model import Lead
from connector.pipeline import Pipeline
from connector.statuses import Catalogue
from connector.store import Store
from connector.store import contacts as cs
from connector.store import quarantine as quarantine_store
from connector.store.tables import contacts, quarantine

MAPPING = Mapping.model_validate(
    {
        "default_region": "MY",
        "id_column": "id",
        "columns": {
            "email": "email",
            "phone": "phone",
            "name": "full_name",
            "country": "country",
            "budget": {"custom": "budget", "type": "number"},
        },
    }
)


def row(**values: str) -> Lead:
    return MAPPING.apply(
        values, source="sheet", ref=f"row {values.get('id')}", catalogue=Catalogue.default()
    )


def ingest(store: Store, *records: Lead) -> Any:
    return Pipeline(store, workers=0).ingest("sheet", records)


def rows(store: Store, kind: str) -> list[dict[str, Any]]:
    return [
        q for q in quarantine_store.entries(store, limit=None, include_resolved=True, kind=kind)[0]
    ]


def test_a_bad_email_beside_a_good_phone_is_a_field_issue_of_a_contact(store: Store) -> None:
    stats = ingest(
        store,
        row(id="1", email="siti aishah@yahoo.com", phone="012-987 6543", name="Siti Aishah"),
        row(id="2", email="nobody at all", name="No One"),  # nothing identifies them
    )
    assert (stats.created, stats.quarantined, stats.field_issues) == (1, 1, 1)
    assert stats.field_reasons == {"email: invalid address (the part before the @)": 1}
    [issue] = rows(store, "field")
    [whole] = rows(store, "record")
    assert whole["ref"] == "row 2" and whole["contact_id"] is None
    assert (issue["field"], issue["ref"], issue["raw"]["value"]) == (
        "email",
        "row 1",
        "siti aishah@yahoo.com",
    )
    assert "aishah" not in issue["reason"]
    shown = cs.show_contact(store, issue["contact_id"])
    assert shown["phone"] == "+60129876543" and shown["email"] is None
    assert [(i["field"], i["value"]) for i in shown["field_issues"]] == [
        ("email", "siti aishah@yahoo.com")
    ]


def test_the_same_bad_value_again_is_filed_once(store: Store) -> None:
    for _ in range(2):
        ingest(store, row(id="1", email="a@x.com", budget="a lot"))
    assert len(rows(store, "field")) == 1
    assert count_contacts(store) == 1


def test_reimporting_the_fixed_value_resolves_its_issue(store: Store) -> None:
    ingest(store, row(id="1", email="a@x.com", budget="a lot", country="Atlantis"))
    assert {q["field"] for q in rows(store, "field")} == {"budget", "country"}
    stats = ingest(store, row(id="1", email="a@x.com", budget="1 500", country="Atlantis"))
    assert stats.updated == 1
    by_field = {q["field"]: q for q in rows(store, "field")}
    assert by_field["budget"]["resolved_at"] is not None
    assert by_field["country"]["resolved_at"] is None  # still wrong: still open
    [contact] = quarantine_store.entries(store, limit=None, kind="field")[0]
    assert contact["field"] == "country"
    shown = cs.show_contact(store, by_field["budget"]["contact_id"])
    assert shown["custom"]["budget"] == 1500
    assert [i["field"] for i in shown["field_issues"]] == ["country"]
    # The same bad value given again opens its issue again.
    ingest(store, row(id="1", email="a@x.com", budget="a lot", country="Atlantis"))
    assert {q["field"] for q in quarantine_store.entries(store, limit=None, kind="field")[0]} == {
        "budget",
        "country",
    }


def test_a_merged_contact_shows_the_issues_of_what_it_absorbed(store: Store) -> None:
    ingest(store, row(id="1", email="a@x.com", budget="a lot"), row(id="2", phone="012-345 6789"))
    ids = _ids(store)
    absorbed = next(q["contact_id"] for q in rows(store, "field"))
    survivor = next(i for i in ids if i != absorbed)
    cs.merge_contacts(store, survivor, absorbed, "kevin")
    shown = cs.show_contact(store, survivor)
    assert [i["field"] for i in shown["field_issues"]] == ["budget"]


def test_a_multi_value_email_keeps_every_address(store: Store) -> None:
    ingest(store, row(id="1", email="bad; a@x.com, b@x.com"))
    [contact] = [cs.show_contact(store, i) for i in _ids(store)]
    assert contact["email"] == "a@x.com"
    assert contact["custom"]["emails"] == ["bad", "b@x.com"]
    assert rows(store, "field") == [] and rows(store, "record") == []


def _ids(store: Store) -> list[int]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                select(contacts.c.id).where(contacts.c.merged_into.is_(None)).order_by("id")
            ).scalars()
        )


def count_contacts(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(contacts)).scalar_one())


def test_field_issue_rows_point_at_their_contact(store: Store) -> None:
    ingest(store, row(id="1", email="a@x.com", phone="12345"))
    with store.engine.connect() as conn:
        kinds = conn.execute(select(quarantine.c.kind, quarantine.c.contact_id)).all()
    assert [(k, c is not None) for k, c in kinds] == [("field", True)]
