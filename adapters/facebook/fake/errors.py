"""Graph's error answers, shaped as reference §D shows them (code, subcode, fbtrace_id)."""

from __future__ import annotations

import secrets
from typing import Any

THROTTLE_MESSAGES = {  # texts as commonly seen in Graph errors [2nd]; 80005 text is a GUESS
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80005: "(#80005) There have been too many leadgen api calls to this Page. "
    "Please wait a bit and try again.",
}


class GraphError(Exception):
    """A Graph error answer: its HTTP status, the `error` object's fields, extra headers."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        type_: str = "OAuthException",
        subcode: int | None = None,
        status: int = 400,
        transient: bool | None = None,
        user_title: str | None = None,
        user_msg: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.type, self.subcode = code, message, type_, subcode
        self.status, self.transient, self.headers = status, transient, headers or {}
        self.user_title, self.user_msg = user_title, user_msg

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            err["error_subcode"] = self.subcode
        if self.transient is not None:
            err["is_transient"] = self.transient
        if self.user_title:
            err["error_user_title"] = self.user_title
        if self.user_msg:
            err["error_user_msg"] = self.user_msg
        err["fbtrace_id"] = "A" + secrets.token_urlsafe(15)[:20]
        return {"error": err}


def not_found(obj_id: str, method: str = "get") -> GraphError:
    return GraphError(
        100,
        f"Unsupported {method} request. Object with ID '{obj_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation. Please read the "
        "Graph API documentation at https://developers.facebook.com/docs/graph-api",
        type_="GraphMethodException",
        subcode=33,
    )


def param_error(message: str) -> GraphError:
    return GraphError(100, f"(#100) {message}")
