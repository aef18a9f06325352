"""kill -9 in the middle of an import, several times, then finish it: every lead is in
the store exactly once and the result equals an uninterrupted import."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from connector.store.tables import contacts, cursors, identities, leads, quarantine

pytestmark = pytest.mark.slow

MAPPING = "columns:\n  Name: first_name\n  Email: email\n  Phone: phone\n  City: city\n"


def make_csv(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    people: list[tuple[str, str, str]] = []
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["Name", "Email", "Phone", "City"])
        for i in range(rows):
            if people and rng.random() < 0.2:  # the same person again, other formatting
                name, email, phone = rng.choice(people)
                out.writerow(
                    [name.upper(), f"  {email.upper()} ", phone.replace(" ", ""), "Kraków"]
                )
                continue
            if rng.random() < 0.02:
                out.writerow([f"Bad {i}", f"bad{i}@", "", "X"])
                continue
            name, email = f"Osoba {i}", f"osoba{i}@przyklad.pl"
            phone = (
                f"+48 6{rng.randint(0, 99):02d} {rng.randint(0, 999):03d} {rng.randint(0, 999):03d}"
            )
            people.append((name, email, phone))
            out.writerow([name, email, phone, rng.choice(["Łódź", "Gdańsk", "Poznań"])])


def snapshot(url: str) -> dict[str, object]:
    engine = create_engine(url)
    with engine.connect() as conn:

        def n(table, *where):  # type: ignore[no-untyped-def]
            return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()

        people = sorted(
            conn.execute(
                select(contacts.c.email, contacts.c.phone).where(contacts.c.merged_into.is_(None))
            ).all()
        )
        dup_leads = conn.execute(
            select(func.count()).select_from(
                select(leads.c.source_id)
                .group_by(leads.c.source, leads.c.source_id)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
        out = {
            "contacts": n(contacts, contacts.c.merged_into.is_(None)),
            "leads": n(leads),
            "identities": n(identities),
            "quarantine": n(quarantine),
            "duplicate_leads": dup_leads,
            "people": people,
            "cursor": conn.execute(select(cursors.c.value)).scalar_one_or_none(),
        }
    engine.dispose()
    return out


def committed_row(db: Path) -> int:
    """The last row the import committed (its cursor), read beside the running writer."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT value FROM cursors").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not migrated yet, or locked for a moment
        return 0
    return int(json.loads(row[0])["row"]) if row else 0


def import_cmd(url: str, data: Path, mapping: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "connector",
        "--store",
        url,
        "import",
        "csv",
        str(data),
        "--mapping",
        str(mapping),
        "--source",
        "people",
        "--region",
        "PL",
        "--json",
    ]


def test_kill_nine_mid_import_loses_and_repeats_nothing(tmp_path: Path) -> None:
    data, mapping = tmp_path / "people.csv", tmp_path / "m.yaml"
    make_csv(data, 60_000)
    mapping.write_text(MAPPING, encoding="utf-8")
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    subprocess.run(
        import_cmd(reference, data, mapping), check=True, capture_output=True, timeout=300
    )
    expected = snapshot(reference)
    assert expected["duplicate_leads"] == 0 and expected["quarantine"] > 0

    killed = tmp_path / "killed.db"
    url = f"sqlite:///{killed}"
    rng = random.Random(11)
    kills, last_row = 0, 0
    # Kill on observed progress, not after a fixed sleep: a faster machine (or a faster
    # importer) must not finish the file before the kills land. Each run is killed at a
    # random moment after it has committed at least one batch beyond the previous run.
    for _ in range(8):
        proc = subprocess.Popen(
            import_cmd(url, data, mapping),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None and committed_row(killed) <= last_row:
            assert time.monotonic() < deadline, "the import made no progress in 120 s"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break  # it finished: the final run below must then change nothing
        # The whole process group: the importer and its normalising workers.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
        last_row = committed_row(killed)
    final = subprocess.run(
        import_cmd(url, data, mapping), check=True, capture_output=True, text=True, timeout=300
    )
    assert json.loads(final.stdout)["rows"] >= 0
    assert kills >= 3, f"only {kills} kills landed before the import finished: make the file bigger"
    got = snapshot(url)
    assert got == expected


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_exit_when_the_importer_is_killed_alone(tmp_path: Path) -> None:
    """kill -9 of the importer's own pid (as a supervisor or the OOM killer would do,
    not its whole group) must not leave its normalising worker and fork server behind."""
    data, mapping = tmp_path / "people.csv", tmp_path / "m.yaml"
    make_csv(data, 60_000)
    mapping.write_text(MAPPING, encoding="utf-8")
    db = tmp_path / "store.db"
    proc = subprocess.Popen(
        import_cmd(f"sqlite:///{db}", data, mapping),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its workers share its process group; the test sees them
    )
    try:
        deadline = time.monotonic() + 120
        while committed_row(db) == 0:  # the pool is up once the first batch is stored
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        assert proc.poll() is None, "the import finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(proc.pid), "the importer's workers outlived it"
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
