"""`leadsync quarantine` as an admin uses it: the list names the file and what to do,
a fixed-and-re-imported row closes by itself, dismiss closes the rest, and a dry run
does not talk about quarantine it did not keep."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import IMPORT_SAMPLE, SAMPLE, lines, run


def test_list_names_the_file_and_says_what_to_do(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'q.db'}"
    dry = run(*IMPORT_SAMPLE, "--dry-run", store=store).stdout
    assert "would be quarantined" in dry and "nothing was quarantined" in dry
    assert "quarantine list" not in dry and "quarantine retry" not in dry
    run(*IMPORT_SAMPLE, store=store)
    shown = run("quarantine", "list", "--limit", "2", store=store).stdout
    assert "leads.csv line 31" in shown and "(1-2 of 8)" in shown
    assert "--offset 2" in shown
    everything = run("quarantine", "list", "--limit", "0", store=store).stdout
    assert "fix the mapping" in everything and "fix the data" in everything
    only = lines(run("quarantine", "list", "--json", "--source", "nobody", store=store).stdout)
    assert only == []


def test_a_fixed_and_reimported_row_closes_and_dismiss_closes_the_rest(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'q.db'}"
    mapping = tmp_path / "m.yaml"
    mapping.write_text((SAMPLE / "leads.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    csv = tmp_path / "leads.csv"
    csv.write_bytes((SAMPLE / "leads.csv").read_bytes())
    run("import", "csv", str(csv), "--mapping", str(mapping), store=store)
    assert len(lines(run("quarantine", "list", "--json", store=store).stdout)) == 8
    # The admin adds the missing status word and imports the file again (a new copy).
    fixed = mapping.read_text(encoding="utf-8").replace(
        "      Thất bại: Lost", "      Thất bại: Lost\n      Có thể: Reach"
    )
    mapping.write_text(fixed, encoding="utf-8")
    again = tmp_path / "leads-again.csv"
    again.write_bytes(csv.read_bytes())
    stats = json.loads(
        run("import", "csv", str(again), "--mapping", str(mapping), "--json", store=store).stdout
    )
    assert stats["resolved"] == 1
    left = lines(run("quarantine", "list", "--json", store=store).stdout)
    # The unknown status word was a field issue of its contact: the value came in fixed.
    assert len(left) == 7 and "leads.csv line 32" not in {q["ref"] for q in left}
    closed = lines(run("quarantine", "list", "--all", "--json", store=store).stdout)
    assert {q["ref"]: q["resolution"] for q in closed}["leads.csv line 32"] == "reingested"
    by_id = run("quarantine", "dismiss", str(left[0]["id"]), store=store).stdout
    assert "dismissed 1 quarantine entry" in by_id
    run("quarantine", "dismiss", "--source", "customers-csv", store=store)
    assert lines(run("quarantine", "list", "--json", store=store).stdout) == []
    refused = run("quarantine", "dismiss", store=store, ok=False)
    assert refused.returncode == 2 and "say which entries" in refused.stderr


def test_import_without_a_mapping_shows_what_it_inferred(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'q.db'}"
    people = tmp_path / "people.csv"
    people.write_text("Họ tên,Emel,Bandar\nNguyễn Văn An,an@example.com,Hà Nội\n", "utf-8")
    dry = run("import", "csv", str(people), "--dry-run", store=store).stdout
    assert "Emel -> email" in dry and "nothing was imported" in dry
    # It stopped before the store: not even an empty one was made.
    assert not (tmp_path / "q.db").exists()
    done = run("import", "csv", str(people), "--json", store=store)
    assert "Họ tên -> full_name" in done.stderr and json.loads(done.stdout)["created"] == 1
    nobody = tmp_path / "nobody.csv"
    nobody.write_text("Nama,Bandar\nAli,Ipoh\n", "utf-8")
    refused = run("import", "csv", str(nobody), store=store, ok=False)
    assert refused.returncode == 2 and "no column identifies a person" in refused.stderr
    drafted = run("mapping", "draft", str(people), "--region", "vn").stdout
    assert "default_region: VN" in drafted and "Emel: email" in drafted
