"""The `leadsync` command as a user runs it: a real process, a real store."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "adapters" / "csv" / "samples"
IMPORT_SAMPLE = (
    "import",
    "csv",
    str(SAMPLE / "leads.csv"),
    "--mapping",
    str(SAMPLE / "leads.yaml"),
)


def run(
    *args: str, store: str | None = None, stdin: str | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "connector"]
    if store:
        cmd += ["--store", store]
    proc = subprocess.run([*cmd, *args], input=stdin, capture_output=True, text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_import_sample_twice_then_look(store: str, tmp_path: Path) -> None:
    args = [*IMPORT_SAMPLE, "--json"]
    first = json.loads(run(*args, store=store).stdout)
    assert first["rows"] == 42 and first["skipped"] == 1  # one blank row
    # Only the rows nobody can be identified by are quarantined: `not-an-email` with no
    # phone, and a row with neither. Bad single values (a phone, a status word, a
    # budget, a country, an email beside a good phone) are field issues of a contact.
    assert first["quarantined"] == 2
    assert first["field_issues"] == 6
    assert first["field_reasons"]["budget: not a number"] == 1
    # 39 good rows: 30 people; 6 rows fold into a person an earlier row made, 2 merge
    # two contacts each into one, 1 (row 16) is row 5 again, written differently.
    assert (first["created"], first["merged"], first["folded"], first["unchanged"]) == (
        30,
        2,
        6,
        1,
    )
    assert first["updated"] == 0
    outcomes = ("created", "updated", "merged", "unchanged", "folded", "quarantined", "skipped")
    assert sum(first[k] for k in outcomes) == first["rows"]
    again = json.loads(run(*args, store=store).stdout)  # the same file: its cursor is at the end
    assert (again["rows"], again["created"]) == (0, 0)
    # A copy is another file, read row by row: every row is recognised, nothing changes.
    copy = tmp_path / "copy.csv"
    copy.write_bytes(Path(IMPORT_SAMPLE[2]).read_bytes())
    with_copy = [str(copy) if a == IMPORT_SAMPLE[2] else a for a in args]
    second = json.loads(run(*with_copy, store=store).stdout)
    assert second["rows"] == 42 and second["unchanged"] == 39 and second["quarantined"] == 2
    assert (second["created"], second["updated"], second["merged"]) == (0, 0, 0)
    assert sum(second[k] for k in outcomes) == second["rows"]
    contacts = lines(run("contacts", "list", "--json", "--limit", "100", store=store).stdout)
    assert len(contacts) == 30
    # Two people sharing an office phone are kept apart and offered as possible duplicates.
    [pair] = lines(run("contacts", "duplicates", "--json", store=store).stdout)
    assert pair["key"] == "phone:+48226281234"
    assert {c["last_name"] for c in pair["contacts"]} == {"Nowak", "Kowalski"}
    # An unaccented spelling of a person does not replace the accented one.
    gosia = next(c for c in contacts if c["email"] == "malgorzata.wojcik@onet.pl")
    assert (gosia["first_name"], gosia["last_name"], gosia["city"]) == (
        "Małgorzata",
        "Wójcik",
        "Kraków",
    )
    siti = next(c for c in contacts if c["email"] == "siti.nurhaliza@gmail.com")
    assert siti["phone"] == "+60123456789" and siti["status_name"] == "New"
    # `12,000` in the en_US column is twelve thousand; `12 500,00` reads one way only.
    assert siti["custom"] == {"budget": 12500.0, "marketing_consent": True, "deal_value": 12000}
    aishah = next(c for c in contacts if c["phone"] == "+60129876543")
    assert aishah["email"] is None and aishah["first_name"] == "Siti"  # bad email, kept
    ana = next(c for c in contacts if c["email"] == "ana.silva@gmail.com")
    assert ana["custom"]["emails"] == ["ana@silva.pt"]  # a second address, kept
    test = next(c for c in contacts if c["custom"].get("is_test"))
    assert test["email"] == "test@fb.com" and test["first_name"] is None
    hoa = next(c for c in contacts if c["email"] == "hoa.pham@gmail.com")
    assert hoa["phone"] == "+84903111222" and hoa["status_name"] == "Qualified"
    shown = json.loads(run("contacts", "show", str(hoa["id"]), "--json", store=store).stdout)
    assert {i["key"] for i in shown["identities"]} == {
        "email:hoa.pham@gmail.com",
        "phone:+84903111222",
    }
    assert [h["to"] for h in shown["status_history"]] == ["New", "Qualified"]
    quarantined = lines(run("quarantine", "list", "--kind", "record", "--json", store=store).stdout)
    assert {q["ref"]: q["field"] for q in quarantined} == {
        "leads.csv line 31": "email",
        "leads.csv line 33": "email",
    }
    issues = lines(run("quarantine", "list", "--kind", "field", "--json", store=store).stdout)
    assert sorted((q["ref"], q["field"]) for q in issues) == [
        ("leads.csv line 30", "phone"),
        ("leads.csv line 32", "status"),
        ("leads.csv line 34", "budget"),
        ("leads.csv line 35", "country"),
        ("leads.csv line 35", "phone"),
        ("leads.csv line 36", "email"),
    ]
    assert all(q["contact_id"] for q in issues)
    # The raw value is in the issue, never in its reason.
    bad_email = next(q for q in issues if q["field"] == "email")
    assert bad_email["raw"]["value"] == "siti aishah@yahoo.com"
    assert "aishah" not in bad_email["reason"]
    shown = json.loads(run("contacts", "show", str(aishah["id"]), "--json", store=store).stdout)
    assert [(i["field"], i["value"]) for i in shown["field_issues"]] == [
        ("email", "siti aishah@yahoo.com")
    ]
    assert "field issues" in run("contacts", "show", str(aishah["id"]), store=store).stdout


def test_set_status_and_merge(store: str) -> None:
    run(*IMPORT_SAMPLE, "--json", store=store)
    ids = [c["id"] for c in lines(run("contacts", "list", "--json", store=store).stdout)][:2]
    run("contacts", "set-status", str(ids[0]), "Negotiating", "--actor", "kevin", store=store)
    run("contacts", "merge", str(ids[0]), str(ids[1]), store=store)
    shown = json.loads(run("contacts", "show", str(ids[1]), "--json", store=store).stdout)
    assert shown["id"] == ids[0] and shown["status_name"] == "Negotiating"
    bad = run("contacts", "set-status", str(ids[0]), "Maybe", store=store, ok=False)
    assert bad.returncode == 2 and "unknown status 'Maybe'" in bad.stderr
    missing = run("contacts", "show", "99999", store=store, ok=False)
    assert missing.returncode == 2 and "no contact with id 99999" in missing.stderr
    shown_text = " ".join(run("contacts", "show", str(ids[0]), store=store).stdout.split())
    assert f"leadsync contacts unmerge {ids[1]}" in shown_text
    run("contacts", "unmerge", str(ids[1]), "--actor", "kevin", store=store)
    back = json.loads(run("contacts", "show", str(ids[1]), "--json", store=store).stdout)
    assert back["id"] == ids[1] and "merged_from" not in back
    again = run("contacts", "unmerge", str(ids[1]), store=store, ok=False)
    assert again.returncode == 2 and "no merge to undo" in again.stderr
    # The sample's office phone: a possible duplicate, dismissed by a person.
    [pair] = lines(run("contacts", "duplicates", "--json", store=store).stdout)
    run("contacts", "duplicates", "dismiss", str(pair["id"]), "--actor", "kevin", store=store)
    assert lines(run("contacts", "duplicates", "--json", store=store).stdout) == []


def test_quarantine_retry_after_fixing_the_mapping(store: str, tmp_path: Path) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text((SAMPLE / "leads.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    run("import", "csv", str(SAMPLE / "leads.csv"), "--mapping", str(mapping), store=store)
    fixed = mapping.read_text(encoding="utf-8").replace(
        "      Thất bại: Lost", "      Thất bại: Lost\n      Có thể: Reach"
    )
    mapping.write_text(fixed, encoding="utf-8")
    # The unknown status word made a field issue, not a lost person; the two records
    # nobody can be identified by stay quarantined, whatever the mapping says.
    stats = json.loads(run("quarantine", "retry", "--json", store=store).stdout)
    assert stats["created"] == 0 and stats["quarantined"] == 2
    assert sum(stats["reasons"].values()) >= 2  # why each still fails
    left = lines(run("quarantine", "list", "--kind", "record", "--json", store=store).stdout)
    assert len(left) == 2 and all(q["attempts"] == 2 for q in left)

    # Re-importing the record with the mapping fixed resolves its field issue.
    def open_fields() -> set[tuple[str, str]]:
        out = run("quarantine", "list", "--kind", "field", "--json", store=store).stdout
        return {(q["ref"], q["field"]) for q in lines(out)}

    assert ("leads.csv line 32", "status") in open_fields()
    copy = tmp_path / "again.csv"
    copy.write_bytes((SAMPLE / "leads.csv").read_bytes())
    again = json.loads(
        run("import", "csv", str(copy), "--mapping", str(mapping), "--json", store=store).stdout
    )
    assert again["updated"] == 1
    still = open_fields()
    assert ("leads.csv line 32", "status") not in still and ("leads.csv line 34", "budget") in still
    everything = lines(run("quarantine", "list", "--all", "--json", store=store).stdout)
    fixed_issue = next(q for q in everything if q["field"] == "status")
    assert fixed_issue["resolved_at"] is not None


def test_dry_run_writes_nothing(store: str) -> None:
    out = json.loads(run(*IMPORT_SAMPLE, "--dry-run", "--json", store=store).stdout)
    assert out["created"] == 30 and out["dry_run"] is True
    assert lines(run("contacts", "list", "--json", store=store).stdout) == []


def test_match_keys_reproduces_metas_examples() -> None:
    stdin = "\n".join(
        json.dumps(r, ensure_ascii=False)
        for r in [
            {
                "email": "John_Smith@gmail.com",
                "phone": "(650)555-1212",
                "first_name": "Mary",
                "last_name": "정",
            },
            {"first_name": "Valéry", "phone": "12345"},
        ]
    )
    out = lines(run("match-keys", "--region", "US", stdin=stdin).stdout)
    keys = out[0]["match_keys"]
    assert (
        keys["EMAIL"]["sha256"]
        == "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    )
    assert keys["PHONE"] == {
        "normalized": "16505551212",
        "sha256": "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
    }
    assert (
        keys["FN"]["sha256"] == "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"
    )
    assert (
        keys["LN"]["sha256"] == "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"
    )
    assert (
        out[1]["match_keys"]["FN"]["sha256"]
        == "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"
    )
    assert "phone" in out[1]["errors"] and out[0]["errors"] == {}


def test_config_validate_and_schema(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    example = ROOT / "config" / "leadsync.example.yaml"
    missing = run("config", "validate", str(example), ok=False)
    assert missing.returncode == 2
    assert "facebook.app_secret: environment variable FACEBOOK_APP_SECRET is not set" in (
        " ".join(missing.stderr.split())
    )
    for name in ("FACEBOOK_APP_SECRET", "FACEBOOK_SYSTEM_USER_TOKEN", "FACEBOOK_VERIFY_TOKEN"):
        monkeypatch.setenv(name, "x")  # the subprocess inherits the environment
    assert (
        "valid config"
        in run("config", "validate", str(ROOT / "config" / "leadsync.example.yaml")).stdout
    )
    assert "valid mapping" in run("config", "validate", str(SAMPLE / "leads.yaml")).stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("store:\n  url: 5\n  uri: x\n", encoding="utf-8")
    proc = run("config", "validate", str(bad), ok=False)
    assert proc.returncode == 2 and f"{bad}:3: store.uri" in proc.stderr
    schema = json.loads(run("config", "schema").stdout)
    assert "store" in schema["properties"]
    assert schema["$defs"]["StoreConfig"]["properties"]["url"]["description"]


def test_db_upgrade_and_demo(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'up.db'}"
    from connector.store.engine import head_revision

    upgraded = run("db", "upgrade", store=url).stdout
    assert f"revision {head_revision()}" in " ".join(upgraded.split())
    demo = run("demo", "--workdir", str(tmp_path / "demo"), "--seconds", "9")
    text = " ".join(demo.stdout.split())
    # A copy of the CSV, read row by row, changed nothing.
    assert "42 rows read, 0 created, 0 updated, 0 merged, 39 unchanged" in text
    assert "the daemon listens on http://127.0.0.1:" in text
    # The daemon polled the emulator and took leads by webhook while it ran.
    from sqlalchemy import create_engine, func, select

    from connector.store.tables import leads, webhook_deliveries

    engine = create_engine(f"sqlite:///{tmp_path / 'demo' / 'demo.db'}")
    with engine.connect() as conn:
        by_source = dict(
            conn.execute(select(leads.c.source, func.count()).group_by(leads.c.source)).all()
        )
        hooks = conn.execute(
            select(func.count()).select_from(webhook_deliveries)
            .where(webhook_deliveries.c.processed_at.is_not(None))
        ).scalar_one()  # fmt: skip
        # Conversion Leads: what the dataset received is what the outbox delivered.
        from connector.store.tables import outbox

        capi = dict(
            conn.execute(
                select(outbox.c.delivered_at.is_not(None), func.count())
                .where(outbox.c.destination == "meta-conversions")
                .group_by(outbox.c.delivered_at.is_not(None))
            ).all()
        )
    engine.dispose()
    received = re.search(r"Conversion Leads events received by the emulator's dataset: (\d+)", text)
    assert received is not None and int(received.group(1)) == capi.get(True, 0)
    assert sum(capi.values()) > 0  # an initial stage per contact a Meta lead created
    assert by_source["customers-csv"] >= 20 and by_source["facebook"] >= 50
    # The sales sheet was read (one John Smith has nothing that identifies him) and keyed.
    assert by_source["sales-sheet"] == 5
    assert "sheet rows given a leadsync id: 6" in text
    assert hooks >= 2
    assert f"leads by source: customers-csv {by_source['customers-csv']}" in text
    assert f"--store sqlite:///{tmp_path / 'demo' / 'demo.db'} status" in text
    assert f"--store sqlite:///{tmp_path / 'demo' / 'demo.db'} contacts list" in text
    # The sample's broken rows and leads went to quarantine, and the summary says so.
    shown = re.search(r"quarantine: (\d+) open", text)
    assert shown is not None and int(shown.group(1)) > 0
    assert "{'" not in demo.stdout and "by status:" in text  # no Python reprs
    assert (
        "quarantine"
        not in text.split("contacts by status:")[1].split("\n")[0].split("quarantine:")[0]
    )  # quarantine is not a status
    # The "look around" commands work as printed.
    [status_line] = [ln for ln in demo.stdout.splitlines() if ln.strip().endswith(" status")]
    again = subprocess.run(shlex.split(status_line), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr


def test_config_validate_reads_the_working_directorys_leadsync_yaml(tmp_path: Path) -> None:
    (tmp_path / "leadsync.yaml").write_text("default_region: Malaysia\n")
    cmd = [sys.executable, "-m", "connector", "config", "validate"]
    env = {k: v for k, v in os.environ.items() if k != "LEADSYNC_CONFIG"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "leadsync.yaml:1: default_region" in proc.stderr
