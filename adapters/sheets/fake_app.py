"""The Sheets emulator's HTTP routes: the v4 values API as gspread calls it.

`GET /v4/spreadsheets/{id}` (metadata), `GET .../values/{range}`, `GET .../values:batchGet`,
`PUT .../values/{range}` (update), `POST .../values:batchUpdate`, `POST
.../values/{range}:append`, `POST .../values/{range}:clear`, `POST .../values:batchClear`.
Every request needs `Authorization: Bearer <token>` of a known service account (401),
the spreadsheet must exist (404) and be shared with it (403); quotas answer 429. Errors
have Google's shape `{"error": {"code", "message", "status"}}`. An exception that is not
a SheetsError is the fake's own bug: answered 500 "fake bug: ..." so it is seen.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.sheets.fake_cells import DATE_RENDERS, INPUTS, RENDERS, SheetsError, invalid
from adapters.sheets.fake_state import Spreadsheet

if TYPE_CHECKING:
    from adapters.sheets.fake import FakeSheets

UNAUTHENTICATED = SheetsError(
    401,
    "UNAUTHENTICATED",
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project.",
)

Handler = Callable[[Request, Spreadsheet], Any]


class Api:
    def __init__(self, fake: FakeSheets) -> None:
        self.fake = fake

    def app(self) -> Starlette:
        base = "/v4/spreadsheets/{sid}"
        return Starlette(
            routes=[
                Route(
                    base + "/values:batchGet", self.wrap("read", self.batch_get), methods=["GET"]
                ),
                Route(
                    base + "/values:batchUpdate",
                    self.wrap("write", self.batch_update),
                    methods=["POST"],
                ),
                Route(
                    base + "/values:batchClear",
                    self.wrap("write", self.batch_clear),
                    methods=["POST"],
                ),
                Route(base + "/values/{rest:path}", self.values, methods=["GET", "PUT", "POST"]),
                Route(base, self.wrap("read", self.metadata), methods=["GET"]),
            ]
        )

    # -- plumbing --------------------------------------------------------------------------
    def wrap(self, kind: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self.answer(request, kind, handler)

        return endpoint

    async def answer(self, request: Request, kind: str, handler: Handler) -> Response:
        fake = self.fake
        try:
            user = fake.user(request.headers.get("authorization"))
            fault = fake.fault(kind)
            if fault is not None:
                raise fault
            with fake.drive.lock:
                fake.drive.quota.take(kind, user)
                book = fake.drive.open(request.path_params["sid"], user)
                request.state.body = await _json(request) if request.method != "GET" else None
                result = handler(request, book)
            response = JSONResponse(result)
            fake.count(kind, request, len(response.body))
            return response
        except SheetsError as err:
            fake.count(f"error {err.code}", request, 0)
            return JSONResponse(err.body(), status_code=err.code)
        except Exception as exc:  # the emulator's own bug: loud, never a silent 200
            return JSONResponse(
                {"error": {"code": 500, "message": f"fake bug: {exc!r}", "status": "INTERNAL"}},
                status_code=500,
            )

    async def values(self, request: Request) -> Response:
        rest = request.path_params["rest"]
        for suffix, kind, handler in (
            (":append", "write", self.append),
            (":clear", "write", self.clear),
        ):
            if rest.endswith(suffix) and request.method == "POST":
                request.state.range = unquote(rest[: -len(suffix)])
                return await self.answer(request, kind, handler)
        request.state.range = unquote(rest)
        if request.method == "GET":
            return await self.answer(request, "read", self.get)
        if request.method == "PUT":
            return await self.answer(request, "write", self.update)
        return JSONResponse(
            {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}},
            status_code=404,
        )

    # -- handlers (called under the drive's lock) ----------------------------------------
    def metadata(self, request: Request, book: Spreadsheet) -> Any:
        return book.metadata()

    def get(self, request: Request, book: Spreadsheet) -> Any:
        option, dates, major = _render(request)
        return self.fake.drive.get(book, request.state.range, option, dates, major)

    def batch_get(self, request: Request, book: Spreadsheet) -> Any:
        option, dates, major = _render(request)
        ranges = request.query_params.getlist("ranges")
        if not ranges:
            raise invalid("Must specify at least one range.")
        return {
            "spreadsheetId": book.spreadsheet_id,
            "valueRanges": [self.fake.drive.get(book, r, option, dates, major) for r in ranges],
        }

    def update(self, request: Request, book: Spreadsheet) -> Any:
        option = _input(request.query_params.get("valueInputOption"))
        body = _object(request.state.body)
        return self.fake.drive.update(book, request.state.range, body.get("values", []), option)

    def batch_update(self, request: Request, book: Spreadsheet) -> Any:
        body = _object(request.state.body)
        option = _input(body.get("valueInputOption"))
        return self.fake.drive.batch_update(book, body.get("data", []), option)

    def append(self, request: Request, book: Spreadsheet) -> Any:
        option = _input(request.query_params.get("valueInputOption"))
        insert = request.query_params.get("insertDataOption", "OVERWRITE")
        if insert not in ("OVERWRITE", "INSERT_ROWS"):
            raise invalid(f"Invalid value at 'insert_data_option' ({insert})")
        body = _object(request.state.body)
        return self.fake.drive.append(
            book, request.state.range, body.get("values", []), option, insert
        )

    def clear(self, request: Request, book: Spreadsheet) -> Any:
        return self.fake.drive.clear(book, request.state.range)

    def batch_clear(self, request: Request, book: Spreadsheet) -> Any:
        body = _object(request.state.body)
        cleared = [self.fake.drive.clear(book, r)["clearedRange"] for r in body.get("ranges", [])]
        return {"spreadsheetId": book.spreadsheet_id, "clearedRanges": cleared}


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise invalid("Invalid JSON payload received.") from None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected an object")
    return body


def _input(option: str | None) -> str:
    """`valueInputOption` is required on writes; Google refuses a write without it."""
    if option is None:
        raise invalid("'valueInputOption' is required but not specified")
    if option not in INPUTS:
        raise invalid(f"Invalid value at 'value_input_option' ({option})")
    return option


def _render(request: Request) -> tuple[str, str, str]:
    option = request.query_params.get("valueRenderOption", "FORMATTED_VALUE")
    dates = request.query_params.get("dateTimeRenderOption", "SERIAL_NUMBER")
    major = request.query_params.get("majorDimension", "ROWS")
    if option not in RENDERS:
        raise invalid(f"Invalid value at 'value_render_option' ({option})")
    if dates not in DATE_RENDERS:
        raise invalid(f"Invalid value at 'date_time_render_option' ({dates})")
    if major not in ("ROWS", "COLUMNS"):
        raise invalid(f"Invalid value at 'major_dimension' ({major})")
    return option, dates, major
