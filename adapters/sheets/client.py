"""The Sheets client: gspread for the API's shapes, connector/http.py for the wire.

gspread builds the requests (ranges, render and input options, batch bodies) and takes a
`session` (§F). The session given here sends each call through the shared HTTP layer,
so Sheets gets what every adapter gets: timeouts, retries of 5xx, a 429 pausing the
account's quota scope and resuming, call and error metrics, and errors that say what a
person can do (share the sheet, fix the id). Google's URLs are rewritten to `api_url`
when it is not Google's (the emulator).

Auth: a bearer `token` as given, or a service account key whose access token is
refreshed by google-auth (installed with gspread) before it expires.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import requests

from adapters.sheets.config import SheetsConfig
from connector.sdk import ErrorTable, Fail, Hooks, HttpClient, RateLimited

GOOGLE = "https://sheets.googleapis.com"
SCOPES = ["https://www.googleapis.com/auth/spreadsheets"]
QUOTA = "sheets:quota"


def _status(response: requests.Response) -> str | None:
    try:
        error = response.json().get("error", {})
    except ValueError:
        return None
    status = error.get("status") if isinstance(error, dict) else None
    return str(status) if status else None


def error_table(account: str, quota_wait: float = 15.0) -> ErrorTable:
    """Google's answers (§F): quota 429s pause and resume; the rest say what to do."""
    share = f"share the spreadsheet with {account} (as an editor, for write-back)"
    return ErrorTable(
        statuses={
            # Quotas refill each minute: a wait of a fraction of it, then try again.
            429: RateLimited(QUOTA, default_wait=quota_wait),
            401: Fail("the credentials are not accepted: check the key file or token"),
            403: Fail(share),
            404: Fail("no such spreadsheet: check spreadsheet_id (the id in its URL)"),
            400: Fail("Google refused the request: check worksheet and header_row"),
        },
        codes={"RESOURCE_EXHAUSTED": RateLimited(QUOTA, default_wait=quota_wait)},
        code_of=_status,
        fallback="check the sheet's settings, then retry",
    )


class _Wire(requests.Session):
    """The session gspread uses: every call goes through `HttpClient.request`."""

    def __init__(self, http: HttpClient, target: str, auth: Callable[[], str]) -> None:
        super().__init__()
        self.http, self.target, self.token = http, target.rstrip("/"), auth

    def request(  # type: ignore[override]
        self,
        method: str | bytes,
        url: str | bytes,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        json: Any = None,
        **_: Any,
    ) -> requests.Response:
        text = url.decode() if isinstance(url, bytes) else url
        if text.startswith(GOOGLE):
            text = self.target + text[len(GOOGLE) :]
        self.http.session.headers["Authorization"] = f"Bearer {self.token()}"
        verb = method.decode() if isinstance(method, bytes) else method
        return self.http.request(verb.upper(), text, json=json, params=params, scope=QUOTA)


class SheetsClient:
    """One service account's access to the Sheets API."""

    def __init__(
        self,
        config: SheetsConfig,
        *,
        hooks: Hooks | None = None,
        stopping: threading.Event | None = None,
        quota_wait: float = 15.0,
    ) -> None:
        """`quota_wait`: seconds a 429 pauses the account's calls (Google sends no
        Retry-After; its per-minute quotas refill within the minute)."""
        self.account, auth = _credentials(config)
        self.http = HttpClient(
            "sheets",
            config.api_url,
            error_table(self.account, quota_wait),
            hooks=hooks,
            stopping=stopping,
            max_pause=65.0,  # one quota minute is waited out in the call
        )
        # Imported here: gspread (with google-auth and oauthlib) takes ~0.17 s to import,
        # which every `leadsync` command paid at start, sheets configured or not.
        import gspread

        self.gc = gspread.Client(auth=None, session=_Wire(self.http, config.api_url, auth))  # type: ignore[arg-type]

    @property
    def calls(self) -> int:
        return self.http.calls

    def values(self, spreadsheet_id: str, worksheet: str) -> list[list[Any]]:
        """A whole worksheet in one request: unformatted, so numbers come as the digits
        Google stored (not as displayed: `6.01235E+10`, `60,123,456,789`), dates as the
        text a person sees."""
        params: dict[str, str | int | bool | float | list[str] | None] = {
            "valueRenderOption": "UNFORMATTED_VALUE",
            "dateTimeRenderOption": "FORMATTED_STRING",
        }
        body = self.gc.http_client.values_get(spreadsheet_id, a1_title(worksheet), params=params)
        values = body.get("values", [])  # a blank sheet has no `values` (§J)
        return [list(row) for row in values]

    def write(self, spreadsheet_id: str, worksheet: str, cells: Sequence[Cell]) -> int:
        """Cells (column letter, row number, text) in one batchUpdate, RAW so our text
        stays text. Runs of rows in one column go as one range: 50,000 new keys are one
        range of 50,000 values, not 50,000 ranges (Google suggests bodies under 2 MB)."""
        if not cells:
            return 0
        body = {"valueInputOption": "RAW", "data": ranges(worksheet, cells)}
        result = self.gc.http_client.values_batch_update(spreadsheet_id, body)
        return int(result.get("totalUpdatedCells", 0))

    def close(self) -> None:
        self.http.close()


def a1_title(title: str) -> str:
    """A worksheet title in a range: always quoted, quotes doubled (valid for any title)."""
    return "'" + title.replace("'", "''") + "'"


Cell = tuple[str, int, str]
"""A cell to write: column letter, 1-based row number, text."""


def ranges(worksheet: str, cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """ValueRanges for `cells`: consecutive rows of one column merged (the last value
    given for a cell wins)."""
    by_column: dict[str, dict[int, str]] = {}
    for column, row, text in cells:
        by_column.setdefault(column, {})[row] = text
    title = a1_title(worksheet)
    data: list[dict[str, Any]] = []
    for column, rows in sorted(by_column.items()):
        numbers = sorted(rows)
        start = 0
        for i in range(1, len(numbers) + 1):
            if i == len(numbers) or numbers[i] != numbers[i - 1] + 1:
                first, last = numbers[start], numbers[i - 1]
                data.append(
                    {
                        "range": f"{title}!{column}{first}:{column}{last}",
                        "values": [[rows[n]] for n in numbers[start:i]],
                    }
                )
                start = i
    return data


def _credentials(config: SheetsConfig) -> tuple[str, Callable[[], str]]:
    """(the account's name for messages, a function giving a fresh access token)."""
    if config.token is not None:
        token = config.token.get_secret_value()
        return "the token's account", lambda: token
    if config.credentials_file is not None:
        info: Mapping[str, Any] = json.loads(config.credentials_file.read_text())
    else:
        assert config.credentials_json is not None
        info = json.loads(config.credentials_json.get_secret_value())
    # google-auth comes with gspread; its service-account flow signs a JWT and trades it
    # for an access token, refreshed here shortly before it expires.
    from google.auth.transport.requests import Request
    from google.oauth2.service_account import Credentials

    creds = Credentials.from_service_account_info(dict(info), scopes=SCOPES)  # type: ignore[no-untyped-call]
    lock = threading.Lock()

    def fresh() -> str:
        with lock:
            if not creds.valid:
                creds.refresh(Request())
            return str(creds.token)

    return str(info.get("client_email", "the service account")), fresh


__all__ = ["Cell", "SheetsClient", "a1_title", "ranges"]
