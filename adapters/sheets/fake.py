"""A local emulator of the Google Sheets v4 values API, as gspread 6 uses it.

Built from shared/reference/external-apis.md §F and §J, not from our client. The parts:
fake_cells (A1 ranges, how typed text is read, how cells render), fake_state (sheets,
reads and writes, quotas), fake_app (routes). gspread is pointed at it through its
`session` (`gspread.Client(auth=None, session=FakeSheets.session())`), which rewrites
`https://sheets.googleapis.com` to the emulator; `leadsync fake sheets --port P` serves
it standalone with a sample sheet.

Control methods below act as the people who use the sheet: a rep typing rows and
statuses (read as the UI reads them, so `+60123456789` loses its `+`), sorting the sheet,
deleting rows; and as Google failing (`fail_next`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import requests
from starlette.requests import Request

from adapters.sheets.fake_app import UNAUTHENTICATED, Api
from adapters.sheets.fake_cells import Area, SheetsError, column_index, parse_range
from adapters.sheets.fake_state import Drive, Spreadsheet, Worksheet
from connector.sdk import ThreadedServer, serve_until_interrupted

GOOGLE = "https://sheets.googleapis.com"
SERVICE_ACCOUNT = "leadsync@leadsync-demo.iam.gserviceaccount.com"
TOKEN = "ya29.fake-sheets-token"


class FakeSheets:
    """Spreadsheets, the service accounts that may read them (token -> email), quotas."""

    def __init__(
        self,
        *,
        tokens: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        per_user: int = 60,
        per_project: int = 300,
    ) -> None:
        self.tokens = dict(tokens or {TOKEN: SERVICE_ACCOUNT})
        self.drive = Drive(clock)
        self.drive.quota.per_user, self.drive.quota.per_project = per_user, per_project
        self.calls: Counter[str] = Counter()
        self.bytes_sent = 0
        """Bytes of the JSON bodies answered (what a poll costs on the wire)."""
        self._faults: list[tuple[str, SheetsError]] = []
        self._lock = threading.Lock()
        self._server = ThreadedServer(Api(self).app(), "fake-sheets")
        self.base_url = ""

    # -- server ----------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.base_url = self._server.start(host, port)
        return self.base_url

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeSheets:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def session(self, token: str = TOKEN) -> requests.Session:
        """A requests session for gspread that sends Google's URLs here, with `token`."""
        return Rewriting(GOOGLE, self.base_url, token)

    # -- for the routes --------------------------------------------------------------------
    def user(self, header: str | None) -> str:
        scheme, _, value = (header or "").partition(" ")
        user = self.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise UNAUTHENTICATED
        return user

    def fault(self, kind: str) -> SheetsError | None:
        with self._lock:
            for index, (wanted, error) in enumerate(self._faults):
                if wanted in (kind, "any"):
                    del self._faults[index]
                    return error
        return None

    def count(self, kind: str, request: Request, size: int) -> None:
        with self._lock:
            self.calls[kind] += 1
            self.bytes_sent += size

    # -- control: Google -------------------------------------------------------------------
    def fail_next(self, kind: str = "any", code: int = 429, times: int = 1) -> None:
        """The next `times` requests of `kind` (read, write, any) fail with `code`."""
        statuses = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 403: ""}
        messages = {
            429: "Quota exceeded for quota metric 'Read requests' and limit 'Read requests "
            "per minute per user' of service 'sheets.googleapis.com'.",
            500: "Internal error encountered.",
            503: "The service is currently unavailable.",
            403: "The caller does not have permission",
        }
        status = statuses.get(code) or "PERMISSION_DENIED"
        with self._lock:
            for _ in range(times):
                self._faults.append((kind, SheetsError(code, status, messages.get(code, ""))))

    def clear_faults(self) -> None:
        """Google answers normally again."""
        with self._lock:
            self._faults.clear()

    # -- control: the people using the sheet -----------------------------------------------
    def add_spreadsheet(
        self,
        spreadsheet_id: str,
        title: str = "Leads",
        tabs: Sequence[str] = ("Leads",),
        shared_with: Iterable[str] = (SERVICE_ACCOUNT,),
    ) -> Spreadsheet:
        return self.drive.create(spreadsheet_id, title, tabs, set(shared_with))

    def tab(self, spreadsheet_id: str, title: str | None = None) -> Worksheet:
        return self.drive.files[spreadsheet_id].tab(title)

    def type_rows(
        self, spreadsheet_id: str, tab: str, rows: Sequence[Sequence[str]], start: int = 1
    ) -> None:
        """A person types `rows` from row `start` (1-based), column A on, into the UI."""
        with self.drive.lock:
            sheet = self.tab(spreadsheet_id, tab)
            sheet.rows = max(sheet.rows, start - 1 + len(rows))
            sheet.cols = max(sheet.cols, max((len(r) for r in rows), default=0))
            sheet.write(Area(tab, start - 1, 0, None, None), rows, "USER_ENTERED")

    def edit(self, spreadsheet_id: str, tab: str, cell: str, text: str) -> None:
        """A person types `text` into `cell` (`D7`)."""
        with self.drive.lock:
            sheet = self.tab(spreadsheet_id, tab)
            area = parse_range(cell)
            sheet.write(area, [[text]], "USER_ENTERED")

    def sort(
        self,
        spreadsheet_id: str,
        tab: str,
        column: str,
        header_rows: int = 1,
        reverse: bool = False,
    ) -> None:
        """Data > Sort range: rows below the header ordered by `column` (A-Z or Z-A)."""
        with self.drive.lock:
            sheet = self.tab(spreadsheet_id, tab)
            used, _ = sheet.used()
            col = column_index(column)
            body = list(range(header_rows, used))

            def key(row: int) -> tuple[int, str]:
                cell = sheet.cells.get((row, col))
                return (1, "") if cell is None else (0, str(cell.render("FORMATTED_VALUE", "")))

            # Blank cells sort last both ways, as in Sheets.
            order = sorted(body, key=key, reverse=reverse)
            if reverse:
                order = [r for r in order if key(r)[0] == 0] + [r for r in order if key(r)[0]]
            moved = {old: new for new, old in zip(body, order, strict=True)}
            sheet.cells = {(moved.get(r, r), c): v for (r, c), v in sheet.cells.items()}

    def delete_rows(
        self, spreadsheet_id: str, tab: str, first: int, last: int | None = None
    ) -> None:
        """Right-click > Delete rows `first`..`last` (1-based, inclusive): rows below move up."""
        last = first if last is None else last
        gone = last - first + 1
        with self.drive.lock:
            sheet = self.tab(spreadsheet_id, tab)
            kept = {}
            for (r, c), v in sheet.cells.items():
                if r < first - 1:
                    kept[(r, c)] = v
                elif r > last - 1:
                    kept[(r - gone, c)] = v
            sheet.cells = kept
            sheet.rows -= gone

    def values(self, spreadsheet_id: str, tab: str | None = None) -> list[list[str]]:
        """What a person sees: the used part of the sheet, as text."""
        with self.drive.lock:
            sheet = self.tab(spreadsheet_id, tab)
            grid = sheet.grid(Area(sheet.title, 0, 0, None, None), "FORMATTED_VALUE", "")
            return [[str(v) for v in row] for row in grid.get("values", [])]


class Rewriting(requests.Session):
    """A session that sends `prefix` URLs to `target` with a bearer token: how gspread is
    pointed at the emulator (its URLs are constants imported by name, §F)."""

    def __init__(self, prefix: str, target: str, token: str) -> None:
        super().__init__()
        self.prefix, self.target = prefix, target
        self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        text = url.decode() if isinstance(url, bytes) else url
        if text.startswith(self.prefix):
            text = self.target + text[len(self.prefix) :]
        return super().request(method, text, *args, **kwargs)


# -- `leadsync fake sheets`: a sample sheet of the kind sales teams keep ---------------------

SAMPLE_ID = "1LeadsyncSampleSheet0000000000000000000000"
SAMPLE_ROWS: list[list[str]] = [
    ["Sales leads, Q4 (shared with the team)"],  # a title row: the header is row 2
    ["Name", "Phone", "Email", "Status", "Owner", "Notes", "Notes"],
    [
        "Siti Aishah",
        "+60123456789",
        "siti@example.my",
        "Baru",
        "Aminah",
        "from the expo",
        "call after 5pm",
    ],
    ["Nguyễn Văn Hùng", "0912345678", "hung@example.vn", "Đang liên hệ", "Linh"],
    ["Małgorzata Wójcik", "+48 601 234 567", "m.wojcik@example.pl", "Zakwalifikowany"],
    ["", "0612345678", "noname@example.com", "Nowy"],  # a blank first column
    ["John Smith", "(415) 555-2671", "", "Won", "Kevin", "", "called twice"],
    ["Ahmad", "012-987 6543", "ahmad@", "Tidak layak"],
]


def sample(fake: FakeSheets) -> Spreadsheet:
    book = fake.add_spreadsheet(SAMPLE_ID, "Sales leads", ("Leads", "Archive"))
    fake.type_rows(SAMPLE_ID, "Leads", SAMPLE_ROWS)
    return book


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Run until Ctrl-C, printing what to point a client at."""
    fake = FakeSheets()
    sample(fake)
    url = fake.start(host, port)
    print(f"fake Google Sheets at {url} (send https://sheets.googleapis.com there)")
    print(f"  token: {TOKEN}  (service account {SERVICE_ACCOUNT})")
    print(f"  spreadsheet: {SAMPLE_ID}  worksheets: Leads (header on row 2), Archive")
    print(
        f"  try: curl -H 'Authorization: Bearer {TOKEN}' "
        f"'{url}/v4/spreadsheets/{SAMPLE_ID}/values/Leads?valueRenderOption=UNFORMATTED_VALUE'"
    )
    serve_until_interrupted(fake.stop)
