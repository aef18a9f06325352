"""The store suite: ingest, identity, merge, quarantine and cursors, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from connector.model import Lead
from connector.pipeline import Pipeline
from connector.ports import Batch
from connector.statuses import NEW, QUALIFIED, UNKNOWN, WON, Catalogue
from connector.store import Store, open_store
from connector.store import contacts as cs
from connector.store import quarantine as quarantine_store
from connector.store.tables import contacts, cursors, identities, leads, metadata, quarantine


def lead(ref: str, source: str = "test", **fields: Any) -> Lead:
    status = fields.pop("status", None)
    custom = fields.pop("custom", {})
    source_id = fields.pop("source_id", None)
    return Lead(
        source=source,
        ref=ref,
        fields=fields,
        custom=custom,
        status=status,
        source_id=source_id,
        raw={"ref": ref, **fields},
    )


def ingest(store: Store, *records: Lead, source: str = "test") -> Any:
    return Pipeline(store, default_region="MY", workers=0).ingest(source, records)


def count(store: Store, table: Any, *where: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def live(store: Store) -> int:
    return count(store, contacts, contacts.c.merged_into.is_(None))


def failures_of(target: Callable[[int], object], threads: int) -> list[BaseException]:
    """Run target(0..threads-1) on threads at once; what they raised (surfaced by the
    caller's assertion, each with its traceback)."""
    failed: list[BaseException] = []

    def run(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:
            failed.append(exc)

    started = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    return failed


def test_migrations_match_the_tables(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_same_person_in_other_formatting_is_one_contact(store: Store) -> None:
    stats = ingest(
        store,
        lead("row 2", email=" Siti.N@Gmail.com ", phone="012-345 6789", first_name="Siti"),
        lead("row 3", email="siti.n@gmail.com", city="Ipoh"),
        lead("row 4", phone="+60 12-345 6789", last_name="Nurhaliza"),
    )
    assert (stats.created, stats.merged, stats.quarantined) == (1, 0, 0)
    assert live(store) == 1
    [row] = cs.list_contacts(store)[1]
    assert row["email"] == "siti.n@gmail.com"
    assert row["phone"] == "+60123456789"
    assert (row["first_name"], row["last_name"], row["city"]) == ("Siti", "Nurhaliza", "Ipoh")


def test_record_matching_two_contacts_merges_them_newer_value_wins(store: Store) -> None:
    ingest(store, lead("a", email="a@x.com", city="Kraków", first_name="Ania"))
    ingest(store, lead("b", phone="+48600700800", city="Gdańsk", last_name="Nowak"))
    assert live(store) == 2
    stats = ingest(store, lead("c", email="a@x.com", phone="600 700 800", country="PL"))
    assert stats.merged == 1
    assert live(store) == 1
    _total, [row] = cs.list_contacts(store)
    # The survivor is the oldest, but Gdańsk was observed later: an automatic merge keeps
    # the newer observation (a merge by hand keeps the survivor's, test_manual_merge).
    assert row["city"] == "Gdańsk"
    assert row["last_name"] == "Nowak"  # blanks filled from the absorbed
    assert count(store, identities) == 2
    assert count(store, leads, leads.c.contact_id == row["id"]) == 3
    # The absorbed contact is a tombstone: showing it shows the survivor.
    with store.engine.connect() as conn:
        gone = conn.execute(
            select(contacts.c.id).where(contacts.c.merged_into.is_not(None))
        ).scalar_one()
    shown = cs.show_contact(store, gone)
    assert shown["id"] == row["id"] and shown["merged_from"] == gone
    assert any(i["kind"] == "merge" for i in shown["interactions"])
    # A later record for the absorbed one's phone lands on the survivor.
    ingest(store, lead("d", phone="+48 600 700 800", company="ACME"))
    assert live(store) == 1
    assert cs.show_contact(store, row["id"])["company"] == "ACME"


def test_merge_inside_one_batch_creates_one_contact(store: Store) -> None:
    stats = ingest(
        store,
        lead("1", email="hoa@gmail.com"),
        lead("2", phone="0903 111 222", country="VN"),
        lead("3", email="HOA@gmail.com", phone="+84 903 111 222"),
    )
    assert (stats.created, stats.merged) == (1, 1)
    assert live(store) == 1
    assert count(store, contacts) == 1  # the temporary contact was never written
    [contact] = cs.list_contacts(store)[1]
    assert [h["to"] for h in cs.show_contact(store, contact["id"])["status_history"]] == ["New"]


def test_survivor_is_the_contact_furthest_along(store: Store) -> None:
    ingest(store, lead("1", email="old@x.com"))
    ingest(store, lead("2", phone="+60123456789", status=WON))
    ingest(store, lead("3", email="old@x.com", phone="+60123456789"))
    [row] = cs.list_contacts(store)[1]
    assert row["status"] == WON
    assert row["email"] == "old@x.com"


def test_reimport_changes_nothing(store: Store) -> None:
    batch = [
        lead("1", email="a@x.com", first_name="A"),
        lead("2", email="A@X.com ", first_name="A"),
        lead("3", phone="12345"),  # invalid: quarantined once
    ]
    first = ingest(store, *batch)
    assert (first.created, first.unchanged, first.quarantined) == (1, 1, 1)
    before = (count(store, contacts), count(store, leads), count(store, quarantine))
    second = ingest(store, *batch)
    assert (second.created, second.updated, second.merged) == (0, 0, 0)
    assert second.unchanged == 2
    assert (count(store, contacts), count(store, leads), count(store, quarantine)) == before


def test_bad_records_are_quarantined_with_field_and_reason(store: Store) -> None:
    stats = ingest(
        store,
        lead("row 2", email="ok@x.com"),
        lead("row 3", email="not-an-email"),
        lead("row 4", phone="12345"),
        lead("row 5", city="Nowhere"),
    )
    assert stats.created == 1 and stats.quarantined == 3
    rows = {r["ref"]: r for r in quarantine_store.entries(store, limit=None)[0]}
    assert rows["row 3"]["field"] == "email"
    assert rows["row 4"]["field"] == "phone"
    assert "nothing identifies" in rows["row 5"]["reason"]
    assert rows["row 4"]["raw"]["phone"] == "12345"  # the raw record is kept


def test_automation_never_moves_a_contact_backwards(store: Store) -> None:
    ingest(store, lead("1", email="a@x.com", status=QUALIFIED))
    ingest(store, lead("2", email="a@x.com", status=NEW, city="changed"))
    [row] = cs.list_contacts(store)[1]
    assert row["status"] == QUALIFIED and row["city"] == "changed"
    cs.set_status(store, row["id"], "New", actor="kevin")  # a person may
    shown = cs.show_contact(store, row["id"])
    assert shown["status"] == NEW
    assert shown["status_history"][-1]["origin"] == "person"
    assert shown["status_history"][-1]["actor"] == "kevin"


def test_deleting_a_status_moves_its_contacts_to_unknown(store_url: str) -> None:
    from connector.statuses import Status

    trial = Status(40, "Trial", 33)
    store = open_store(store_url, Catalogue.build([trial]), upgrade=True)
    ingest(store, lead("1", email="a@x.com", status=40))
    store.close()
    store = open_store(store_url, Catalogue.build([trial], deleted=[40]))
    [row] = cs.list_contacts(store)[1]
    assert row["status"] == UNKNOWN
    history = cs.show_contact(store, row["id"])["status_history"]
    assert history[-1]["origin"] == "catalogue: status deleted"
    store.close()


def test_opening_a_store_with_its_recorded_catalogue_writes_nothing(tmp_path: Path) -> None:
    # A read-only command (contacts list) beside a running daemon must not queue for
    # SQLite's write lock, which the daemon holds for a batch at a time.
    import sqlite3

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    open_store(url).close()
    writer = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        store = open_store(url)  # would wait 30 s for the lock, then fail
        assert cs.list_contacts(store)[1] == []
        store.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_manual_merge(store: Store) -> None:
    ingest(
        store,
        lead("1", email="a@x.com", city="A-town"),
        lead("2", email="b@x.com", city="B-town", company="B"),
    )
    ids = sorted(r["id"] for r in cs.list_contacts(store)[1])
    kept = cs.merge_contacts(store, ids[1], ids[0], actor="ops")
    assert kept == ids[1]
    shown = cs.show_contact(store, ids[0])
    assert shown["id"] == ids[1] and shown["city"] == "B-town"
    assert {i["key"] for i in shown["identities"]} == {"email:a@x.com", "email:b@x.com"}
    with pytest.raises(ValueError):
        cs.merge_contacts(store, ids[1], ids[0], actor=None)


class ListSource:
    """A minimal LeadSource over a list, for cursor tests."""

    name = "list"

    def __init__(self, records: list[Lead], fail_after: int | None = None) -> None:
        self.records = records
        self.fail_after = fail_after

    def check(self) -> None: ...

    def streams(self) -> list[str]:
        return ["all"]

    def context(self) -> dict[str, Any]:
        return {"kind": "list"}

    def read(self, stream: str, cursor: Any) -> Iterator[Batch]:
        start = int(cursor or 0)
        for i in range(start, len(self.records), 2):
            if self.fail_after is not None and i >= self.fail_after:
                raise RuntimeError("source died")
            yield Batch(self.records[i : i + 2], i + 2)


def test_cursor_commits_with_rows_and_resumes(store: Store) -> None:
    records = [lead(str(i), source="list", email=f"p{i}@x.com") for i in range(6)]
    with pytest.raises(RuntimeError):
        Pipeline(store, workers=0).run(ListSource(records, fail_after=4))
    assert live(store) == 4
    with store.engine.connect() as conn:
        assert conn.execute(select(cursors.c.value)).scalar_one() == 4
    stats = Pipeline(store, workers=0).run(ListSource(records))
    assert (stats.rows, stats.created) == (2, 2)
    assert live(store) == 6


def test_dry_run_writes_nothing_but_counts_right(store: Store) -> None:
    records = [
        lead("1", email="a@x.com"),
        lead("2", email="a@x.com", city="X"),
        lead("3", email="b@x.com"),
    ]
    stats = Pipeline(store, workers=0, dry_run=True).ingest("test", records)
    assert (stats.created, stats.rows) == (2, 3)
    assert count(store, contacts) == 0 and count(store, leads) == 0


def test_worker_processes_give_the_same_result(store: Store) -> None:
    records = [
        lead(str(i), source="list", email=f"p{i % 150}@x.com", city=str(i % 7)) for i in range(400)
    ]
    source = ListSource(records)
    stats = Pipeline(store, workers=2, batch_size=50).run(source)
    assert stats.rows == 400 and stats.created == 150
    assert live(store) == 150


def test_concurrent_writers_make_one_contact_per_person(store_url: str) -> None:
    """Two processes' worth of writers (threads with their own pipelines) ingest the same
    people at once: the store's unique keys and the pipeline's retry on a lost race
    must leave exactly one contact per person and lose no lead."""
    stores = [open_store(store_url) for _ in range(2)]

    def run(n: int) -> None:
        for start in range(0, 300, 30):
            records = [
                lead(f"{n}-{i}", source=f"s{n}", email=f"p{i}@x.com", phone=f"+6012{i:07d}")
                for i in range(start, start + 30)
            ]
            Pipeline(stores[n], workers=0).ingest(f"s{n}", records)

    assert failures_of(run, 2) == []
    assert live(stores[0]) == 300
    assert count(stores[0], leads) == 600
    assert count(stores[0], identities) == 600  # one email and one phone per person
    for s in stores:
        s.close()


@pytest.mark.postgres
def test_replicas_opening_the_store_together_do_not_collide(store: Store) -> None:
    # Every replica records the catalogue when it opens the store; at the same moment
    # they used to collide on the statuses' key and one replica died at startup.
    url = store.engine.url.render_as_string(hide_password=False)
    if store.dialect != "postgresql":
        pytest.skip("SQLite serialises writers at BEGIN")
    gate = threading.Barrier(6)

    def opener(_n: int) -> None:
        gate.wait()
        open_store(url).close()

    assert failures_of(opener, 6) == []


def test_a_status_dropped_from_the_yaml_is_named_not_guessed(store_url: str) -> None:
    from connector.statuses import Status

    trial = Status(40, "Trial", 33)
    store = open_store(store_url, Catalogue.build([trial]), upgrade=True)
    ingest(store, lead("1", email="a@x.com", status=40), lead("2", email="b@x.com", status=40))
    assert cs.unlisted_statuses(store) == {}
    store.close()
    store = open_store(store_url, Catalogue.default())  # Trial left out of the YAML
    assert cs.unlisted_statuses(store) == {40: 2}
    assert "2 hold 40" in cs.unlisted_advice({40: 2})
    [row, _] = cs.list_contacts(store)[1]
    assert row["status"] == 40  # kept, not moved: only `delete:` moves contacts
    store.close()


def test_writers_in_one_process_take_turns_without_meeting_sqlites_lock(tmp_path: Path) -> None:
    # With busy_timeout 0, any writer that met SQLite's lock would fail at once with
    # "database is locked": eight threads writing together must never meet it, since
    # they queue on the store's own lock and each starts as the previous one ends.
    from datetime import UTC, datetime

    from sqlalchemy import event

    from connector.store.ingest import save_cursor

    store = open_store(f"sqlite:///{tmp_path / 'turns.db'}")
    event.listen(store.engine, "connect", lambda c, _r: c.execute("PRAGMA busy_timeout=0"))
    store.engine.dispose()

    def writer(n: int) -> None:
        for i in range(30):
            with store.engine.begin() as conn:
                save_cursor(conn, "turns", f"w{n}-{i}", {"i": i}, datetime.now(UTC))
            with store.reader.connect() as conn:  # reads take no turn
                conn.execute(select(func.count()).select_from(cursors)).scalar_one()

    assert failures_of(writer, 8) == []
    with store.reader.connect() as conn:
        assert conn.execute(select(func.count()).select_from(cursors)).scalar_one() == 240
    store.close()
