"""The Sheets emulator against gspread 6 itself, over loopback HTTP: what §F and §J of
the reference say Google does (trimmed responses, render options, input options, grid
limits, atomic batches, quotas, error shapes)."""

from __future__ import annotations

from collections.abc import Iterator

import gspread
import pytest
import requests

from adapters.sheets.fake import SAMPLE_ID, TOKEN, FakeSheets, sample
from adapters.sheets.fake_cells import parse_range, user_entered


@pytest.fixture
def fake() -> Iterator[FakeSheets]:
    with FakeSheets() as server:
        sample(server)
        yield server


def client(fake: FakeSheets, token: str = TOKEN) -> gspread.Client:
    return gspread.Client(auth=None, session=fake.session(token))  # type: ignore[arg-type]


def test_gspread_reads_what_a_rep_typed_as_google_renders_it(fake: FakeSheets) -> None:
    ws = client(fake).open_by_key(SAMPLE_ID).worksheet("Leads")
    rows = ws.get_all_values()
    assert rows[1][:4] == ["Name", "Phone", "Email", "Status"]  # the header is row 2
    siti = rows[2]
    # Typed into the UI, +60123456789 became a number: the + is gone before any API reads it.
    assert siti[1] == "60123456789"
    assert rows[3][1] == "912345678"  # and 0912345678 lost its leading 0
    assert rows[4][1] == "+48 601 234 567"  # with spaces it stays text
    unformatted = ws.get_values(value_render_option="UNFORMATTED_VALUE")
    assert unformatted[2][1] == 60123456789 and isinstance(unformatted[2][1], int)


def test_trailing_empty_cells_and_rows_are_left_out(fake: FakeSheets) -> None:
    session = fake.session()
    url = f"{fake.base_url}/v4/spreadsheets/{SAMPLE_ID}/values/Leads"
    body = session.get(url).json()
    lengths = [len(r) for r in body["values"]]
    assert lengths[0] == 1 and len(set(lengths)) > 1  # rows come back ragged
    assert body["range"] == "Leads!A1:Z1000"
    empty = session.get(f"{fake.base_url}/v4/spreadsheets/{SAMPLE_ID}/values/Archive").json()
    assert "values" not in empty and empty["majorDimension"] == "ROWS"


def test_raw_keeps_our_text_and_user_entered_reads_it_as_typed(fake: FakeSheets) -> None:
    ws = client(fake).open_by_key(SAMPLE_ID).worksheet("Archive")
    ws.update([["+60123456789", "0612345678", "12.50"]], "A1", raw=True)
    ws.update([["+60123456789", "0612345678", "12.50"]], "A2", raw=False)
    got = ws.get_values(value_render_option="UNFORMATTED_VALUE")
    assert got[0] == ["+60123456789", "0612345678", "12.50"]
    assert got[1] == [60123456789, 612345678, 12.5]


def test_a_write_outside_the_grid_is_refused_and_append_grows_it(fake: FakeSheets) -> None:
    ws = client(fake).open_by_key(SAMPLE_ID).worksheet("Archive")
    with pytest.raises(gspread.exceptions.APIError) as refused:
        ws.update([["x"]], "A1001")
    assert refused.value.code == 400 and "exceeds grid limits" in str(refused.value)
    fake.tab(SAMPLE_ID, "Archive").rows = 2
    ws.append_rows([["a"], ["b"], ["c"]], value_input_option="RAW")
    assert fake.tab(SAMPLE_ID, "Archive").rows >= 3
    assert fake.values(SAMPLE_ID, "Archive") == [["a"], ["b"], ["c"]]


def test_a_batch_update_is_atomic(fake: FakeSheets) -> None:
    ws = client(fake).open_by_key(SAMPLE_ID).worksheet("Leads")
    before = fake.values(SAMPLE_ID, "Leads")
    with pytest.raises(gspread.exceptions.APIError):
        ws.batch_update(
            [{"range": "D3", "values": [["Won"]]}, {"range": "A2000", "values": [["x"]]}]
        )
    assert fake.values(SAMPLE_ID, "Leads") == before
    ws.batch_update([{"range": "D3", "values": [["Won"]]}, {"range": "D4", "values": [["Lost"]]}])
    after = fake.values(SAMPLE_ID, "Leads")
    assert after[2][3] == "Won" and after[3][3] == "Lost"
    assert fake.calls["write"] == 1  # one batchUpdate request for both ranges


def test_batch_get_reads_several_ranges_in_one_request(fake: FakeSheets) -> None:
    ws = client(fake).open_by_key(SAMPLE_ID).worksheet("Leads")
    reads = fake.calls["read"]
    got = ws.batch_get(["A2:B3", "D2:D3"])
    assert fake.calls["read"] == reads + 1
    assert got[0] == [["Name", "Phone"], ["Siti Aishah", "60123456789"]]
    assert got[1] == [["Status"], ["Baru"]]


def test_quota_per_user_per_minute_is_a_429_like_googles() -> None:
    now = [1000.0]
    with FakeSheets(per_user=3, clock=lambda: now[0]) as fake:
        sample(fake)
        session = fake.session()
        url = f"{fake.base_url}/v4/spreadsheets/{SAMPLE_ID}/values/Leads"
        assert [session.get(url).status_code for _ in range(4)] == [200, 200, 200, 429]
        body = session.get(url).json()["error"]
        assert body["status"] == "RESOURCE_EXHAUSTED" and "per minute" in body["message"]
        # Writes are counted apart from reads, and the quota refills each minute.
        put = session.put(url + "!Z1?valueInputOption=RAW", json={"values": [["x"]]})
        assert put.status_code == 200
        now[0] += 60
        assert session.get(url).status_code == 200
        with pytest.raises(gspread.exceptions.APIError) as limited:
            for _ in range(4):
                client(fake).open_by_key(SAMPLE_ID)
        assert limited.value.code == 429


def test_errors_have_googles_shape(fake: FakeSheets) -> None:
    gc = client(fake)
    with pytest.raises(gspread.exceptions.SpreadsheetNotFound):
        gc.open_by_key("no-such-sheet")
    fake.add_spreadsheet("private", shared_with=["someone@example.com"])
    with pytest.raises(PermissionError):
        gc.open_by_key("private")
    anonymous = requests.get(f"{fake.base_url}/v4/spreadsheets/{SAMPLE_ID}")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["status"] == "UNAUTHENTICATED"
    bad = fake.session().get(f"{fake.base_url}/v4/spreadsheets/{SAMPLE_ID}/values/Nope!A1")
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    no_option = fake.session().put(
        f"{fake.base_url}/v4/spreadsheets/{SAMPLE_ID}/values/Leads!A1", json={"values": [["x"]]}
    )
    assert no_option.status_code == 400


def test_injected_faults_and_the_fakes_own_bugs_are_loud(fake: FakeSheets) -> None:
    fake.fail_next("read", 503)
    session = fake.session()
    url = f"{fake.base_url}/v4/spreadsheets/{SAMPLE_ID}/values/Leads"
    assert session.get(url).status_code == 503
    assert session.get(url).status_code == 200
    formula = session.put(
        url + "!A1?valueInputOption=USER_ENTERED", json={"values": [["=SUM(1,2)"]]}
    )
    assert formula.status_code == 500 and "fake bug" in formula.json()["error"]["message"]


def test_reps_sort_and_delete_rows(fake: FakeSheets) -> None:
    fake.sort(SAMPLE_ID, "Leads", "A", header_rows=2)
    names = [r[0] if r else "" for r in fake.values(SAMPLE_ID, "Leads")[2:]]
    assert names == [
        "Ahmad",
        "John Smith",
        "Małgorzata Wójcik",
        "Nguyễn Văn Hùng",
        "Siti Aishah",
        "",
    ]
    fake.delete_rows(SAMPLE_ID, "Leads", 3, 4)
    assert fake.values(SAMPLE_ID, "Leads")[2][0] == "Małgorzata Wójcik"


@pytest.mark.parametrize(
    ("text", "sheet", "bounds"),
    [
        ("'My ''Sheet'''!A2:C", "My 'Sheet'", (1, 0, None, 3)),
        ("Leads!A:A", "Leads", (0, 0, None, 1)),
        ("Leads!2:5", "Leads", (1, 0, 5, None)),
        ("Leads", "Leads", (0, 0, None, None)),
        ("B3", None, (2, 1, 3, 2)),
        ("A1:B2", None, (0, 0, 2, 2)),
    ],
)
def test_a1_ranges(text: str, sheet: str | None, bounds: tuple[object, ...]) -> None:
    area = parse_range(text)
    assert area.sheet == sheet
    assert (area.row0, area.col0, area.row1, area.col1) == bounds


def test_typed_text_is_read_as_the_ui_reads_it() -> None:
    assert user_entered("'0612") is not None and user_entered("'0612").value == "0612"  # type: ignore[union-attr]
    assert user_entered("1,234").value == 1234.0  # type: ignore[union-attr]
    assert user_entered("TRUE").value is True  # type: ignore[union-attr]
    assert user_entered("2024-01-05").kind == "date"  # type: ignore[union-attr]
    assert user_entered("12%").value == pytest.approx(0.12)  # type: ignore[union-attr]
    assert user_entered("Baru").value == "Baru"  # type: ignore[union-attr]


def test_writes_of_consecutive_rows_go_as_one_range() -> None:
    from adapters.sheets.client import ranges

    data = ranges(
        "Leads", [("H", 5, "c"), ("H", 3, "a"), ("H", 4, "b"), ("H", 9, "z"), ("I", 3, "")]
    )
    assert data == [
        {"range": "'Leads'!H3:H5", "values": [["a"], ["b"], ["c"]]},
        {"range": "'Leads'!H9:H9", "values": [["z"]]},
        {"range": "'Leads'!I3:I3", "values": [[""]]},
    ]
