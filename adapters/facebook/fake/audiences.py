"""The Graph emulator's custom audiences and Conversions API datasets.

Written from shared/reference/external-apis.md §B (custom audiences: users, usersreplace,
sessions, lookalikes, sizes), §C (Conversion Leads events) and §D (errors), not from our
client. What the reference does not state is marked GUESS.

State lives here; `FakeGraph._route` hands the edges it does not know to `route`, so the
lead-ads emulator is unchanged. Every request is validated the way Graph validates it:
a payload with the wrong shape is an error, never a silent partial success; a member
row is counted invalid (`num_invalid_entries`, with samples) when a value that must be
hashed is not a SHA-256 hex digest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_USERS = 10_000  # rows per users/usersreplace request (§B)
MAX_EVENTS = 1_000  # events per /events request (§C)
EVENT_MAX_AGE = 7 * 86_400  # an event older than 7 days fails the whole request (§C)
HASHED_KEYS = {
    "EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI", "CT", "ST", "ZIP",
    "COUNTRY",
}  # fmt: skip
PLAIN_KEYS = {"EXTERN_ID", "MADID"}
SINGLE_SCHEMAS = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE", "MOBILE_ADVERTISER_ID": "MADID"}
FLAGGED = 471  # operation_status of an audience Meta flagged (§B)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LEAD_ID = re.compile(r"^\d{15,16}$")
ACTION_SOURCES = {
    "email", "website", "app", "phone_call", "chat", "physical_store", "system_generated",
    "business_messaging", "other",
}  # fmt: skip


class AudienceError(Exception):
    """A Graph error: code, subcode, message and HTTP status (400 unless said)."""

    def __init__(
        self, code: int, message: str, subcode: int | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.code, self.subcode, self.message, self.status = code, subcode, message, status


def invalid_param(message: str, subcode: int | None = None) -> AudienceError:
    return AudienceError(100, f"(#100) {message}", subcode)


@dataclass
class Session:
    """An upload session (§B): batches numbered from 1, the last one flagged."""

    session_id: int
    kind: str  # "users" or "usersreplace"
    next_seq: int = 1
    received: int = 0
    invalid: int = 0
    done: bool = False
    staged: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {
            "session_id": str(self.session_id),
            "stage": "uploaded" if self.done else "uploading",
            "num_received": self.received,
            "num_invalid_entries": self.invalid,
            "num_matched": self.received - self.invalid,  # GUESS: every valid row matches
        }


@dataclass
class Audience:
    id: str
    account: str
    name: str
    subtype: str  # CUSTOM or LOOKALIKE
    members: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)
    """Rows by their identifying hashes (row values as sent)."""
    schema_kind: str | None = None  # "single" or "multi", fixed by the first upload
    operation_status: int = 200
    sessions: dict[int, Session] = field(default_factory=dict)
    origin: str | None = None
    lookalike_spec: dict[str, Any] | None = None

    def approximate(self) -> tuple[int, int]:
        """Meta shows a range, never the count. GUESS: the count rounded down to two
        significant digits, and +20% above it."""
        n = len(self.members)
        if n < 100:
            return (n and 0), (n and 100)
        digits = 10 ** (len(str(n)) - 2)
        low = n // digits * digits
        return low, int(low * 1.2)


@dataclass
class Dataset:
    """A pixel / dataset receiving Conversions API events."""

    id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    test_events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: int = 0


class Audiences:
    """Ad accounts' audiences and the datasets, for one FakeGraph."""

    def __init__(
        self,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        lead_created: Callable[[str], int | None],
    ) -> None:
        self.clock, self.new_id, self.lead_created = clock, new_id, lead_created
        self.accounts: set[str] = set()
        self.audiences: dict[str, Audience] = {}
        self.datasets: dict[str, Dataset] = {}
        self.throttled_until = 0.0
        self.calls: dict[str, int] = {}
        self.min_after_remove = 0
        """A removal that would leave an audience with fewer members is refused (0: no
        floor). GUESS: the reference says nothing of it; public reports (grouparoo PR
        #1108) quote "Audience Size too low: You cannot remove users from this audience
        because it will result in a low audience size" near 100 people, code unknown."""

    # -- control ---------------------------------------------------------------------------
    def add_account(self, account_id: str) -> str:
        act = account_id if account_id.startswith("act_") else f"act_{account_id}"
        self.accounts.add(act)
        return act

    def add_dataset(self, dataset_id: str) -> Dataset:
        self.datasets[dataset_id] = Dataset(dataset_id)
        return self.datasets[dataset_id]

    def flag(self, audience_id: str) -> None:
        """Meta flags the audience (a policy review): edits fail until it is resolved."""
        self.audiences[audience_id].operation_status = FLAGGED

    def throttle(self, seconds: float) -> None:
        """The custom-audience business-use-case budget is spent for `seconds`."""
        self.throttled_until = self.clock() + seconds

    # -- routing ---------------------------------------------------------------------------
    def handles(self, obj_id: str, edge: str | None) -> bool:
        if obj_id in self.accounts:
            return edge in (None, "customaudiences")
        if obj_id in self.audiences:
            return edge in (None, "users", "usersreplace", "sessions")
        return obj_id in self.datasets and edge == "events"

    def route(self, method: str, obj_id: str, edge: str | None, params: dict[str, str]) -> Any:
        name = f"{method} {edge or 'node'}"
        self.calls[name] = self.calls.get(name, 0) + 1
        if obj_id in self.datasets:
            if method != "POST":
                raise invalid_param("Unsupported request: use POST to send events")
            return self.events(self.datasets[obj_id], params)
        if edge in ("users", "usersreplace") or (edge == "customaudiences" and method == "POST"):
            self._check_budget()
        if obj_id in self.accounts:
            if edge == "customaudiences" and method == "POST":
                return self.create(obj_id, params)
            if edge == "customaudiences" and method == "GET":
                found = [a for a in self.audiences.values() if a.account == obj_id]
                return {"data": [self.node(a, params) for a in found]}
            return {"id": obj_id, "account_id": obj_id.removeprefix("act_")}
        audience = self.audiences[obj_id]
        if edge is None and method == "GET":
            return self.node(audience, params)
        if edge == "sessions" and method == "GET":
            return {"data": [s.json() for s in audience.sessions.values()]}
        if edge == "users" and method in ("POST", "DELETE"):
            return self.users(audience, params, remove=method == "DELETE")
        if edge == "usersreplace" and method == "POST":
            return self.replace(audience, params)
        raise invalid_param(f"Unsupported {method} request on /{obj_id}/{edge or ''}")

    def _check_budget(self) -> None:
        if self.clock() < self.throttled_until:
            raise AudienceError(
                80003,
                "(#80003) There have been too many calls to this ad-account. Wait a bit "
                "and try again.",  # GUESS: text; the code is §B's
            )

    # -- audiences -------------------------------------------------------------------------
    def create(self, account: str, params: dict[str, str]) -> dict[str, Any]:
        name = params.get("name", "").strip()
        if not name:
            raise invalid_param("The parameter name is required", 1713092)  # GUESS subcode
        subtype = params.get("subtype", "CUSTOM")
        if subtype not in ("CUSTOM", "LOOKALIKE"):
            raise invalid_param(f"Invalid subtype {subtype!r}")
        audience = Audience(self.new_id(), account, name, subtype)
        if subtype == "CUSTOM":
            source = params.get("customer_file_source")
            allowed = (
                "USER_PROVIDED_ONLY",
                "PARTNER_PROVIDED_ONLY",
                "BOTH_USER_AND_PARTNER_PROVIDED",
            )
            if source not in allowed:
                raise invalid_param("customer_file_source is required for a customer list")
        else:
            origin = self.audiences.get(params.get("origin_audience_id", ""))
            if origin is None:
                raise invalid_param("origin_audience_id must be a custom audience of this account")
            spec = _json(params.get("lookalike_spec"), "lookalike_spec")
            if not isinstance(spec, dict):
                raise invalid_param("lookalike_spec must be an object")
            ratio = spec.get("ratio")
            if spec.get("type") not in ("similarity", "reach") and not (
                isinstance(ratio, int | float) and 0.01 <= ratio <= 0.20
                and abs(round(ratio * 100) - ratio * 100) < 1e-9
            ):  # fmt: skip
                raise invalid_param("lookalike_spec.ratio must be 0.01 to 0.20 in steps of 0.01")
            if not spec.get("country") and not spec.get("location_spec"):
                raise invalid_param("lookalike_spec needs a country or a location_spec")
            if len(origin.members) < 100:  # §B: the seed needs 100 people
                raise AudienceError(
                    2654,  # GUESS: the code; the rule is §B's
                    "(#2654) The source audience is too small: it must have at least 100 people",
                )
            audience.origin, audience.lookalike_spec = origin.id, spec
        self.audiences[audience.id] = audience
        return {"id": audience.id}

    def node(self, audience: Audience, params: dict[str, str]) -> dict[str, Any]:
        low, high = audience.approximate()
        full = {
            "id": audience.id,
            "name": audience.name,
            "subtype": audience.subtype,
            "approximate_count_lower_bound": low,
            "approximate_count_upper_bound": high,
            "operation_status": {"code": audience.operation_status},
            "delivery_status": {"code": 200 if len(audience.members) >= 100 else 300},
        }
        if audience.origin:
            full["lookalike_spec"] = {**(audience.lookalike_spec or {}), "origin": audience.origin}
        wanted = [f for f in params.get("fields", "id,name").split(",") if f]
        return {k: v for k, v in full.items() if k in wanted or k == "id"}

    # -- members ---------------------------------------------------------------------------
    def _payload(self, audience: Audience, params: dict[str, str]) -> tuple[list[str], list[Any]]:
        if audience.operation_status == FLAGGED:
            raise invalid_param(
                "This audience is flagged (operation_status 471): resolve it in Ads Manager "
                "before editing it",
                1713230,
            )
        payload = _json(params.get("payload"), "payload")
        if not isinstance(payload, dict) or "schema" not in payload or "data" not in payload:
            raise invalid_param("payload must be an object with schema and data")
        schema_value, data = payload["schema"], payload["data"]
        if isinstance(schema_value, str):
            if schema_value not in SINGLE_SCHEMAS:
                raise invalid_param(f"Invalid schema {schema_value!r}")
            schema, kind = [SINGLE_SCHEMAS[schema_value]], "single"
        elif isinstance(schema_value, list) and schema_value:
            unknown = [k for k in schema_value if k not in HASHED_KEYS | PLAIN_KEYS]
            if unknown or len(set(schema_value)) != len(schema_value):
                raise invalid_param(f"Invalid schema: {unknown or 'a key given twice'}")
            schema, kind = list(schema_value), "multi"
        else:
            raise invalid_param("schema must be a key name or a list of key names")
        if audience.schema_kind is not None and audience.schema_kind != kind:
            # §B: an audience made with one kind of schema refuses the other.
            raise AudienceError(2650, "(#2650) Failed to update the custom audience")
        if not isinstance(data, list):
            raise invalid_param("data must be a list")
        if len(data) > MAX_USERS:
            raise invalid_param(f"The number of users in a request exceeds {MAX_USERS:,}")
        audience.schema_kind = kind
        return schema, data

    def _rows(
        self, schema: list[str], data: list[Any]
    ) -> tuple[list[tuple[str, ...]], int, dict[str, str]]:
        valid: list[tuple[str, ...]] = []
        invalid = 0
        samples: dict[str, str] = {}
        for row in data:
            values = [row] if len(schema) == 1 and not isinstance(row, list) else row
            if not isinstance(values, list) or len(values) != len(schema):
                raise invalid_param("Each row of data must have one value per schema key")
            bad = next(
                (
                    k for k, v in zip(schema, values, strict=True)
                    if not isinstance(v, str) or (v and k in HASHED_KEYS and not _SHA256.match(v))
                ),
                None,
            )  # fmt: skip
            if bad is not None or not any(values):
                invalid += 1
                if len(samples) < 10:
                    samples[str(len(samples))] = bad or "empty row"
                continue
            valid.append(tuple(values))
        return valid, invalid, samples

    def users(self, audience: Audience, params: dict[str, str], remove: bool) -> dict[str, Any]:
        schema, data = self._payload(audience, params)
        valid, invalid, samples = self._rows(schema, data)
        if remove and self.min_after_remove:
            leaving = {_identity(schema, row) for row in valid} & audience.members.keys()
            if leaving and len(audience.members) - len(leaving) < self.min_after_remove:
                raise AudienceError(
                    2650,  # GUESS: the code; the text is the one users report
                    "(#2650) Audience Size too low: You cannot remove users from this "
                    "audience because it will result in a low audience size.",
                )
        for row in valid:
            key = _identity(schema, row)
            if remove:
                audience.members.pop(key, None)
            else:
                audience.members[key] = row
        session = self._session(audience, params, "users", len(valid) + invalid, invalid)
        result: dict[str, Any] = {
            "audience_id": audience.id,
            "num_received": len(valid) + invalid,
            "num_invalid_entries": invalid,
            "invalid_entry_samples": samples,
        }
        if session is not None:
            result["session_id"] = str(session.session_id)
        return result

    def replace(self, audience: Audience, params: dict[str, str]) -> dict[str, Any]:
        raw = _json(params.get("session"), "session")
        if not isinstance(raw, dict) or "session_id" not in raw:
            raise invalid_param("usersreplace needs a session with a session_id")
        schema, data = self._payload(audience, params)
        valid, invalid, samples = self._rows(schema, data)
        session_id = int(raw["session_id"])
        seq = raw.get("batch_seq")
        session = audience.sessions.get(session_id)
        if session is None or session.kind != "usersreplace":
            if seq != 1:  # §B: a replace session starts at batch_seq 1
                raise AudienceError(
                    2650,
                    "(#2650) Invalid Upload Batch for Replace - first batch_seq not detected",
                    1870147,
                )
            session = Session(session_id, "usersreplace")
            audience.sessions[session_id] = session
        if session.done:
            raise AudienceError(2650, "(#2650) This replace session has ended", 1870148)  # GUESS
        if seq != session.next_seq:
            raise invalid_param(f"batch_seq must be {session.next_seq}, got {seq}")
        session.next_seq += 1
        session.received += len(valid) + invalid
        session.invalid += invalid
        for row in valid:
            session.staged[_identity(schema, row)] = row
        if raw.get("last_batch_flag") is True:
            audience.members = dict(session.staged)
            session.staged = {}
            session.done = True
        return {
            "audience_id": audience.id,
            "session_id": str(session_id),
            "num_received": len(valid) + invalid,
            "num_invalid_entries": invalid,
            "invalid_entry_samples": samples,
        }

    def _session(
        self, audience: Audience, params: dict[str, str], kind: str, received: int, invalid: int
    ) -> Session | None:
        raw = _json(params.get("session"), "session") if params.get("session") else None
        if raw is None:
            return None
        if not isinstance(raw, dict) or "session_id" not in raw:
            raise invalid_param("session needs a session_id")
        session_id = int(raw["session_id"])
        session = audience.sessions.setdefault(session_id, Session(session_id, kind))
        if raw.get("batch_seq") != session.next_seq:
            raise invalid_param(f"batch_seq must be {session.next_seq}")
        session.next_seq += 1
        session.received += received
        session.invalid += invalid
        session.done = raw.get("last_batch_flag") is True
        return session

    # -- Conversions API -------------------------------------------------------------------
    def events(self, dataset: Dataset, params: dict[str, str]) -> dict[str, Any]:
        dataset.requests += 1
        data = _json(params.get("data"), "data")
        if not isinstance(data, list) or not data:
            raise invalid_param("data must be a non-empty list of events")
        if len(data) > MAX_EVENTS:
            raise invalid_param(f"A request holds at most {MAX_EVENTS:,} events")
        now = self.clock()
        for index, event in enumerate(data):  # one bad event rejects the batch (§C)
            problem = self._event_problem(event, now)
            if problem is not None:
                raise AudienceError(
                    100, f"(#100) Invalid parameter: event {index}: {problem}", 2804003
                )  # GUESS: subcode
        code = params.get("test_event_code")
        if code:
            dataset.test_events.setdefault(code, []).extend(data)
        else:
            dataset.events.extend(data)
        return {"events_received": len(data), "messages": [], "fbtrace_id": self.new_id()}

    def _event_problem(self, event: Any, now: float) -> str | None:
        if not isinstance(event, dict):
            return "an event must be an object"
        if not isinstance(event.get("event_name"), str) or not event["event_name"]:
            return "event_name is required"
        when = event.get("event_time")
        if not isinstance(when, int):
            return "event_time must be a unix time in seconds"
        if when < now - EVENT_MAX_AGE:
            return "event_time is more than 7 days in the past"
        if when > now + 600:  # GUESS: how far in the future is tolerated
            return "event_time is in the future"
        if event.get("action_source") not in ACTION_SOURCES:
            return "action_source is invalid"
        user = event.get("user_data")
        if not isinstance(user, dict) or not user:
            return "user_data is required"
        for key in ("em", "ph"):
            values = user.get(key)
            values = values if isinstance(values, list) else [values] if values else []
            if any(not isinstance(v, str) or not _SHA256.match(v) for v in values):
                return f"user_data.{key} must be SHA-256 hashed"
        custom = event.get("custom_data") or {}
        if isinstance(custom, dict) and custom.get("event_source") == "crm":
            lead = user.get("lead_id")
            if not isinstance(lead, str | int) or not _LEAD_ID.match(str(lead)):
                return "user_data.lead_id must be the 15-16 digit Meta lead id"
            created = self.lead_created(str(lead))
            if created is None:
                return "user_data.lead_id is not a lead of this business"
            if when < created:
                return "event_time is before the lead was created"
            if event["action_source"] != "system_generated":
                return "a CRM event's action_source must be system_generated"
            if not custom.get("lead_event_source"):
                return "custom_data.lead_event_source is required for CRM events"
        return None


def _identity(schema: list[str], row: tuple[str, ...]) -> tuple[str, ...]:
    """A member is known by its identifying keys (email, phone, extern id), else by all."""
    picked = tuple(
        v
        for k, v in zip(schema, row, strict=True)
        if k in {"EMAIL", "PHONE", "EXTERN_ID", "MADID"} and v
    )
    return picked or row


def _json(value: str | None, name: str) -> Any:
    if value is None:
        raise invalid_param(f"The parameter {name} is required")
    try:
        return json.loads(value)
    except ValueError:
        raise invalid_param(f"{name} must be JSON") from None
