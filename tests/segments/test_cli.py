"""Segments from the command line on the bundled sample, on SQLite and PostgreSQL:
lists, counts, exports, bulk status edits, the timeline filter and saved views. The
expected contacts are worked out from `contacts list --json`, not written down."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from tests.e2e.test_cli import IMPORT_SAMPLE, lines, run


def _everyone(store: str) -> list[dict[str, Any]]:
    return lines(run("contacts", "list", "--json", "--limit", "1000", store=store).stdout)


def test_where_count_list_and_export_agree_with_the_contacts(
    store_url: str, tmp_path: Path
) -> None:
    run(*IMPORT_SAMPLE, store=store_url)
    everyone = _everyone(store_url)
    rich = {
        c["id"]
        for c in everyone
        if isinstance((c["custom"] or {}).get("budget"), (int, float))
        and not isinstance(c["custom"]["budget"], bool)
        and c["custom"]["budget"] >= 10000
        and c["status_name"] != "Won"
    }
    assert rich, "the sample has big budgets"
    where = "budget >= 10000 and status != Won"
    counted = json.loads(
        run("contacts", "count", "--where", where, "--json", store=store_url).stdout
    )
    assert counted == {"count": len(rich)}
    listed = lines(
        run(
            "contacts",
            "list",
            "--where",
            where,
            "--json",
            "--sort",
            "-score,name",
            "--columns",
            "id,name,custom.budget,status",
            store=store_url,
        ).stdout
    )
    assert {r["id"] for r in listed} == rich
    assert all(r["custom.budget"] >= 10000 for r in listed)
    # Paging: two pages of one are the first two of the whole list, in order.
    pages = [
        lines(
            run(
                "contacts",
                "list",
                "--where",
                where,
                "--json",
                "--sort",
                "name",
                "--limit",
                "1",
                "--offset",
                str(i),
                store=store_url,
            ).stdout
        )
        for i in (0, 1)
    ]
    whole = lines(
        run(
            "contacts", "list", "--where", where, "--json", "--sort", "name", store=store_url
        ).stdout
    )
    assert [p[0]["id"] for p in pages] == [w["id"] for w in whole[:2]]

    out = tmp_path / "big.csv"
    run("contacts", "export", "--where", where, "--output", str(out), store=store_url)
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert {int(r["id"]) for r in rows} == rich
    by_id = {c["id"]: c for c in everyone}
    assert all(r["email"] == (by_id[int(r["id"])]["email"] or "") for r in rows)

    jsonl = run("contacts", "export", "--where", where, "--format", "jsonl", store=store_url)
    assert {r["id"] for r in lines(jsonl.stdout)} == rich


def test_hashed_export_writes_match_keys_not_values(store_url: str) -> None:
    run(*IMPORT_SAMPLE, store=store_url)
    emails = {c["email"] for c in _everyone(store_url) if c["email"]}
    proc = run("contacts", "export", "--where", "email exists", "--hashed", store=store_url)
    assert not any(e in proc.stdout for e in emails)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert {r["EMAIL"] for r in rows} == {hashlib.sha256(e.encode()).hexdigest() for e in emails}
    assert set(rows[0]) >= {"EMAIL", "PHONE", "FN", "LN", "COUNTRY"}


def test_bulk_set_status_shows_first_and_dry_run_changes_nothing(store_url: str) -> None:
    run(*IMPORT_SAMPLE, store=store_url)
    where = "status = New and country = PL"
    before = _everyone(store_url)
    moving = {c["id"] for c in before if c["status_name"] == "New" and c["country"] == "PL"}
    assert moving
    dry = run("contacts", "set-status", "--where", where, "Reach", "--dry-run", store=store_url)
    assert f"{len(moving)} contacts would move to Reach" in dry.stdout
    assert "nothing changed" in dry.stdout
    assert _everyone(store_url) == before
    done = run(
        "contacts", "set-status", "--where", where, "Reach", "--actor", "kevin", store=store_url
    )
    assert f"{len(moving)} contacts moved to Reach" in done.stdout
    after = {c["id"]: c["status_name"] for c in _everyone(store_url)}
    assert {i for i, s in after.items() if s == "Reach"} >= moving
    assert all(after[c["id"]] == c["status_name"] for c in before if c["id"] not in moving)
    # The timeline filter shows the person's move, and only status changes.
    some = sorted(moving)[0]
    shown = lines(
        run("contacts", "show", str(some), "--kind", "status", "--json", store=store_url).stdout
    )
    assert {s["kind"] for s in shown} == {"status"}
    assert shown[-1]["what"].endswith("New -> Reach (person by kevin)")
    forms = lines(
        run("contacts", "show", str(some), "--kind", "form", "--json", store=store_url).stdout
    )
    assert forms and {f["kind"] for f in forms} == {"form"}
    # The single-contact form still works as before.
    run("contacts", "set-status", str(some), "Qualified", store=store_url)
    assert {c["id"]: c["status_name"] for c in _everyone(store_url)}[some] == "Qualified"


def test_views_list_counts_and_list_by_view(store_url: str, tmp_path: Path) -> None:
    run(*IMPORT_SAMPLE, store=store_url)
    config = tmp_path / "leadsync.yaml"
    config.write_text(
        "views:\n"
        "  - name: poland\n    where: country = PL\n    sort: name\n"
        "    columns: [id, name, city]\n"
        "segments:\n  - name: has phone\n    where: has_phone\n",
        encoding="utf-8",
    )
    everyone = _everyone(store_url)
    views = {
        v["name"]: v
        for v in lines(run("-c", str(config), "views", "list", "--json", store=store_url).stdout)
    }
    assert views["poland"]["count"] == sum(c["country"] == "PL" for c in everyone)
    assert views["has phone"]["count"] == sum(bool(c["phone"]) for c in everyone)
    listed = lines(
        run(
            "-c", str(config), "contacts", "list", "--view", "poland", "--json", store=store_url
        ).stdout
    )
    assert listed and set(listed[0]) == {"id", "name", "city"}
    names = [r["name"] for r in listed]
    assert len(names) == views["poland"]["count"]


def test_a_bad_filter_is_one_line_naming_the_column(store_url: str) -> None:
    run(*IMPORT_SAMPLE, store=store_url)
    bad = run("contacts", "count", "--where", "status >= Qualifed", store=store_url, ok=False)
    assert bad.returncode == 2
    assert "column 11: unknown status 'Qualifed'" in bad.stderr
    assert "Traceback" not in bad.stderr
    later = run("contacts", "list", "--where", "audience = x", store=store_url, ok=False)
    assert "audiences are not built yet" in later.stderr
