"""Names on both stores: a plainer spelling of the same name never replaces a richer one."""

from __future__ import annotations

from connector.model import Lead
from connector.pipeline import Pipeline
from connector.store import Store
from connector.store import contacts as cs


def seen(email: str, first: str, last: str, ref: str) -> Lead:
    fields = {"email": email, "first_name": first, "last_name": last}
    return Lead(source="t", ref=ref, fields=fields, raw={"ref": ref, **fields})


def test_accents_and_case_are_kept_and_real_changes_taken(store: Store) -> None:
    pipeline = Pipeline(store, workers=0)
    pipeline.ingest("t", [seen("h@x.vn", "Văn Hùng", "Nguyễn", "1")])
    pipeline.ingest("t", [seen("h@x.vn", "Van Hung", "NGUYEN", "2")])
    pipeline.ingest("t", [seen("m@x.pl", "MALGORZATA", "wojcik", "3")])
    pipeline.ingest("t", [seen("m@x.pl", "Małgorzata", "Wójcik", "4")])  # richer: taken
    pipeline.ingest("t", [seen("m@x.pl", "Malgorzata", "Wojcik", "5")])
    names = {
        c["email"]: (c["first_name"], c["last_name"])
        for c in (cs.show_contact(store, i) for i in (1, 2))
    }
    assert names == {"h@x.vn": ("Văn Hùng", "Nguyễn"), "m@x.pl": ("Małgorzata", "Wójcik")}
    # Another spelling that is not the same name folded is news. (A name with none of
    # the old one's words would be another person sharing the address: kept apart as a
    # possible duplicate, tests/contract/test_merges.py.)
    pipeline.ingest("t", [seen("h@x.vn", "Văn Hùng", "Nguyễn Trần", "6")])
    assert cs.show_contact(store, 1)["last_name"] == "Nguyễn Trần"
