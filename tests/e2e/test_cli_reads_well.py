"""The CLI as a new admin meets it: readable help, global options anywhere, one line
per job after `run --once`, every configured job in `status`, and read-only commands
that leave an empty directory empty."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from connector.cli import global_options_first
from connector.cli.daemon import readable_cursor
from tests.runtime.test_daemon_process import env

ROOT = Path(__file__).parents[2]


def leadsync(
    *args: str, cwd: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**(extra or env(cwd, "")), "COLUMNS": "80", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_help_shows_placeholders_people_read(tmp_path: Path) -> None:
    shown = leadsync("import", "csv", "--help", cwd=tmp_path).stdout
    assert "FILE..." in shown and "<bool>" not in shown and "list[Path]" not in shown
    assert "{files}" not in shown and "<str>" not in shown
    root = leadsync("--help", cwd=tmp_path).stdout
    assert "<int>" not in root and "<bool>" not in root


def test_global_options_are_moved_before_the_subcommand() -> None:
    assert global_options_first(["backfill", "facebook", "-c", "f.yaml", "--since", "x"]) == [
        "-c", "f.yaml", "backfill", "facebook", "--since", "x",
    ]  # fmt: skip
    assert global_options_first(["status", "--store=sqlite:///a.db", "-vv"]) == [
        "--store=sqlite:///a.db", "-vv", "status",
    ]  # fmt: skip
    assert global_options_first(["x", "--", "-c"]) == ["x", "--", "-c"]


def test_read_only_commands_do_not_create_a_store(tmp_path: Path) -> None:
    for args in (["contacts", "list"], ["status"], ["quarantine", "list"], ["statuses", "list"]):
        done = leadsync(*args, cwd=tmp_path)
        assert done.returncode == 2 and "no store at leadsync.db" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_run_once_with_nothing_configured_says_so(tmp_path: Path) -> None:
    done = leadsync("run", "--once", cwd=tmp_path, extra={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "nothing is configured" in done.stderr


def test_run_once_ends_with_a_line_per_job_and_status_lists_jobs(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 's.db'}"
    fresh = leadsync("--store", store, "status", cwd=tmp_path, extra=env(tmp_path, "tick,fail"))
    # Not created by status: a new store does not exist yet.
    assert "no store at" in fresh.stderr
    leadsync("--store", store, "db", "upgrade", cwd=tmp_path, extra=env(tmp_path, "tick"))
    before = leadsync("status", "--store", store, cwd=tmp_path, extra=env(tmp_path, "tick,fail"))
    assert before.returncode == 0, before.stderr
    assert "fake.tick" in before.stdout and "not run yet" in before.stdout
    done = leadsync("run", "--once", "--store", store, cwd=tmp_path,
                    extra=env(tmp_path, "tick,fail,slow", FAKE_SLOW_BATCHES="2"))  # fmt: skip
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert "fake.tick: ok" in lines and "fake.slow: ok (batches 2)" in lines
    assert any(ln.startswith("fake.fail: failed: RuntimeError") for ln in lines)
    data = json.loads(
        leadsync(
            "status", "--json", "--store", store, cwd=tmp_path, extra=env(tmp_path, "tick")
        ).stdout
    )
    assert data["configured_jobs"] == ["fake.tick"]


def test_cursors_read_as_times_or_rows() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    read, behind = readable_cursor({"until": now.timestamp() - 900}, now)
    assert read == "2026-12-01 11:45:00 UTC" and behind == "15m"
    assert readable_cursor({"sha256": "ab", "row": 35}, now) == ("row 35", "-")
    assert readable_cursor({"rows": {"ls-1": "ab", "ls-2": "cd"}}, now) == ("2 rows seen", "-")
    assert readable_cursor({"statuses": {"ls-1": "Baru"}}, now) == ("1 statuses seen", "-")


def test_meta_style_match_keys_are_read_and_unknown_keys_refused(tmp_path: Path) -> None:
    line = '{"em": "Ana@X.com", "FN": "Ana", "ct": "Ipoh", "nick": "A"}\n'
    done = subprocess.run(
        [sys.executable, "-m", "connector", "match-keys"],
        input=line, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert set(result["match_keys"]) == {"EMAIL", "FN", "CT"}
    assert "not a key match-keys reads" in result["errors"]["nick"]
    shown = leadsync("match-keys", "--help", cwd=tmp_path).stdout
    assert "em=email" in " ".join(shown.split()) and "date_of_birth" in shown


def test_contacts_show_names_the_ad_a_lead_came_from() -> None:
    from connector.cli.contacts import ad_context

    context = {"form_name": "Spring", "ad_id": "9", "adset_name": "MY 25-34",
               "campaign_name": "Launch", "platform": "ig"}  # fmt: skip
    assert ad_context(context) == {
        "form": "Spring", "ad": "9", "ad set": "MY 25-34", "campaign": "Launch", "platform": "ig",
    }  # fmt: skip
    assert ad_context({"is_organic": True, "form_id": "5"}) == {"form": "5", "ad": "(organic)"}
    assert ad_context(None) == {}
