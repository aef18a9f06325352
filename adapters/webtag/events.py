"""What the snippet sends, validated before anything is stored.

One request is one batch from one browser:
`{"site": KEY, "visitor": ID, "events": [EVENT, ...]}` where an event is a
`page_view` (url, referrer, title, the `_fbc`/`_fbp` cookies) or an `identify` (the
traits a form or `leadsync('identify', {...})` gave). Every event has an id the
snippet made, so a batch sent again is stored once. Anything else is malformed: the
request is answered 400 and nothing of it is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
Url = Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s]+$")]
# Meta's form: fb.<subdomain index>.<creation time>.<payload>[.<appendix>].
MetaId = Annotated[str, Field(max_length=512, pattern=r"^fb\.\d\.\d{1,16}\.[^\s;,]+$")]
Text = Annotated[str, Field(max_length=300)]

# A browser's clock may be wrong; a view time further than this from the server's is
# replaced by the time it was received (the order of a visitor's pages is kept).
CLOCK_SKEW = timedelta(hours=24)


class Traits(BaseModel):
    """Who the visitor says they are (a form, or the page's own identify call)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Annotated[str, Field(max_length=320)] | None = None
    phone: Annotated[str, Field(max_length=64)] | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    name: Text | None = None
    company: Text | None = None

    def fields(self) -> dict[str, str]:
        """The traits as lead fields (a full `name` split when first/last are absent)."""
        found = {
            k: v for k, v in self.model_dump(exclude={"name"}).items() if isinstance(v, str) and v
        }
        if self.name and "first_name" not in found and "last_name" not in found:
            first, _, last = self.name.rpartition(" ")
            found.update({"first_name": first or last} | ({"last_name": last} if first else {}))
        return found


class PageViewEvent(BaseModel):
    """A page the visitor saw."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["page_view"]
    id: Id
    at: int = Field(ge=0, description="When, in milliseconds since the epoch (browser clock).")
    url: Url
    referrer: Annotated[str, Field(max_length=2048)] | None = None
    title: Text | None = None
    fbc: MetaId | None = None
    fbp: MetaId | None = None


class IdentifyEvent(BaseModel):
    """The visitor said who they are."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["identify"]
    id: Id
    at: int = Field(ge=0)
    url: Url
    traits: Traits


Event = Annotated[PageViewEvent | IdentifyEvent, Field(discriminator="type")]


class Batch(BaseModel):
    """One request from the snippet."""

    model_config = ConfigDict(extra="forbid")

    site: Annotated[str, Field(max_length=64)]
    visitor: Id
    events: list[Event] = Field(min_length=1)


_BATCH = TypeAdapter(Batch)


class Malformed(ValueError):
    """The request is not a batch the snippet would send; the message says why (never
    with the values themselves)."""


def parse(body: bytes, max_events: int) -> Batch:
    """The batch in `body`; Malformed when it is not one or holds too many events."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Malformed("not JSON") from None
    events = data.get("events") if isinstance(data, dict) else None
    if isinstance(events, list) and len(events) > max_events:
        raise Malformed(f"more than {max_events} events")
    try:
        return _BATCH.validate_python(data)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "body"
        raise Malformed(f"{where}: {exc.errors()[0]['type']}") from None


def moment(at_ms: int, received: datetime) -> datetime:
    """When an event happened: the browser's time unless it is implausible."""
    try:
        at = datetime.fromtimestamp(at_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return received
    return at if abs(at - received) <= CLOCK_SKEW else received
