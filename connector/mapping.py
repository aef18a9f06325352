"""Field mappings: how a source's columns or question keys become contact fields.

One mapping language for every source (CSV columns, sheet headers, lead-form question
keys): each source key goes to a standard field, `status`, `full_name` or a typed
custom attribute, optionally through a value map (e.g. Malay or Polish status words ->
canonical statuses). Problems found here (an unknown status word, a number that is not
one) become field `Problem`s on the lead: the value is left out and kept as a field
issue, never guessed, and the person is still ingested.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from connector import normalize, typed
from connector.config import validate_file
from connector.model import STANDARD_FIELDS, Lead, Problem
from connector.normalize import NormalizationError
from connector.statuses import Catalogue, UnknownStatusError

TARGETS = (*STANDARD_FIELDS, "status", "full_name")

# Countries where a full name is written family name first (`Nguyễn Văn Hùng`).
FAMILY_FIRST = frozenset({"VN", "CN", "KR", "JP", "HU", "TW", "HK"})
# Single-valued fields whose several answers (`a, b`, `a; b`, a list) are split: the
# first valid one is the contact's, the others are kept in a list attribute.
MULTI = {"email": "emails", "phone": "phones"}
_SEPARATED = re.compile(r"\s*[,;]\s*")

NameOrder = Literal["given_first", "family_first"]


class Reads(BaseModel):
    """How typed values are written: shared by a mapping and each of its columns
    (a column's own setting wins)."""

    locale: str | None = Field(
        None,
        description="Locale numbers and dates are written in (pl_PL, en_US, de_DE): "
        "`1.234,56` in pl_PL, `1,234.56` in en_US. Defaults to the locale of "
        "default_region; without either, a number that reads two ways (`1.234`) is a "
        "field issue.",
    )
    decimal: Literal[",", "."] | None = Field(
        None, description="Decimal sign, when only that is known (instead of a locale)."
    )
    dayfirst: bool | None = Field(
        None,
        description="Dates as day/month/year (true) or month/day/year (false); "
        "defaults to the locale's order.",
    )

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str | None) -> str | None:
        return None if value is None else typed.check_locale(value)


class FieldMap(Reads):
    """Where one source key goes."""

    model_config = ConfigDict(extra="forbid")

    field: str | None = Field(
        None, description=f"Standard field, `status` or `full_name`: one of {', '.join(TARGETS)}."
    )
    custom: str | None = Field(None, description="Name of a custom attribute instead of `field`.")
    type: Literal["string", "number", "integer", "boolean", "date", "list"] = Field(
        "string",
        description="Type of the custom attribute; `list` keeps every answer of a "
        "multiple-choice question (other types join them with ', ').",
    )
    values: dict[str, str] = Field(
        default_factory=dict,
        description="Value map applied first, matched without regard to case "
        "(e.g. {Baru: New, Wygrany: Won}).",
    )
    order: NameOrder | None = Field(
        None,
        description="For full_name: which name comes first. Defaults to the mapping's "
        "name_order, else the record's country (family name first in VN, CN, KR, JP, "
        "HU, TW, HK).",
    )

    @model_validator(mode="after")
    def _one_target(self) -> FieldMap:
        if (self.field is None) == (self.custom is None):
            raise ValueError("give exactly one of `field` or `custom`")
        if self.field is not None and self.field not in TARGETS:
            raise ValueError(f"unknown field {self.field!r}; use one of {', '.join(TARGETS)}")
        return self


def _shorthand(value: Any) -> Any:
    # `E-mail: email` is short for `E-mail: {field: email}`; expanding before validation
    # keeps error locations at the column (columns.E-mail.field), not at `columns`.
    return {"field": value} if isinstance(value, str) else value


Target = Annotated[FieldMap, BeforeValidator(_shorthand)]


class Mapping(Reads):
    """A mapping file (config/mappings/*.yaml)."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, description="Source name stored with the leads.")
    default_region: str | None = Field(
        None,
        pattern="^[A-Z]{2}$",
        description="Country for phones without a country code in this source (e.g. PL).",
    )
    delimiter: str | None = Field(None, description="CSV delimiter; detected when absent.")
    encoding: str | None = Field(
        None, description="File encoding (utf-8, utf-8-sig, cp1250, cp1252); detected when absent."
    )
    id_column: str | None = Field(
        None,
        description="Key holding a stable record id; without it a record's content "
        "identifies it (row positions are never used: rows move).",
    )
    id_namespace: str | None = Field(
        None,
        description="Namespace of external_id values, when several sources share one "
        "id space (e.g. a CRM's customer number); defaults to the source name.",
    )
    columns: dict[str, Target] = Field(
        default_factory=dict,
        description="Source key -> target: a field name, or a FieldMap for value maps "
        "and custom attributes.",
    )
    name_order: NameOrder | None = Field(
        None,
        description="Order of full names in this source (family_first, given_first); "
        "defaults to the record's country.",
    )
    unmapped: Literal["ignore", "custom"] = Field(
        "ignore",
        description="What happens to source keys the mapping does not name: `ignore` "
        "(they stay in the stored raw record only) or `custom` (each becomes a custom "
        "attribute of the same name, as given).",
    )

    def fields(self) -> dict[str, FieldMap]:
        return self.columns

    def apply(
        self,
        row: MappingABC[str, Any],
        *,
        source: str,
        ref: str,
        catalogue: Catalogue,
        region: str | None = None,
    ) -> Lead:
        """Map one raw record. A value that cannot be taken becomes a field Problem (the
        person is still ingested without it); what makes the record unreadable, a
        record Problem."""
        lead = Lead(source=source, ref=ref, fields={}, raw=dict(row))
        test = is_test_lead(row)
        if test:  # its dummy answers are no data: kept in raw only
            row = {k: v for k, v in row.items() if not _placeholder(v)}
        lead.region = region or self.default_region
        if self.id_namespace:
            lead.context["id_namespace"] = self.id_namespace
        country = self._country(row) or lead.region
        for key, target in self.fields().items():
            value = row.get(key)
            if value is None:
                continue
            name = target.custom or target.field
            assert name is not None
            if target.field in MULTI:
                self._multi(lead, target.field, value, country)
                continue
            if isinstance(value, list):
                if target.custom is not None and target.type == "list":
                    lead.custom[target.custom] = [str(v).strip() for v in value]
                    continue
                value = ", ".join(str(v).strip() for v in value if str(v).strip())
            text = str(value).strip()
            if target.values:
                text = _lookup(target.values, text)
            if not text:
                continue
            if target.custom is not None:
                try:
                    lead.custom[target.custom] = _typed(text, target.type, self._reading(target))
                except NormalizationError as exc:
                    lead.problems.append(Problem(name, exc.reason, text, "field"))
            elif target.field == "status":
                try:
                    lead.status = catalogue.resolve(text).id
                except UnknownStatusError:
                    lead.problems.append(
                        Problem(
                            "status",
                            "no status for this word: add it to the mapping's values",
                            text,
                            "field",
                        )
                    )
            elif target.field == "full_name":
                full = normalize.name(text)
                lead.custom.setdefault("full_name", full)  # as given: splitting can err
                order = target.order or self.name_order
                if order is None:
                    order = "family_first" if country in FAMILY_FIRST else "given_first"
                first, last = split_name(full, order)
                lead.fields.setdefault("first_name", first)
                if last:
                    lead.fields.setdefault("last_name", last)
            else:
                assert target.field is not None
                lead.fields[target.field] = text
        if self.unmapped == "custom":
            named = self.fields()
            for key, value in row.items():
                if key not in named and key != self.id_column and value not in (None, ""):
                    lead.custom.setdefault(key, value)
        if self.id_column:
            rid = str(row.get(self.id_column) or "").strip()
            if rid:
                lead.source_id = rid
            else:
                lead.problems.append(Problem(self.id_column, "the id column is empty"))
        if test:
            mark_test_lead(lead, lead.source_id)
        return lead

    def _reading(self, target: FieldMap) -> typed.Reading:
        locale = target.locale or self.locale
        decimal = target.decimal or self.decimal
        if locale is None and decimal is None and self.default_region:
            locale = typed.locale_for_region(self.default_region)
        dayfirst = target.dayfirst if target.dayfirst is not None else self.dayfirst
        return typed.Reading(locale, decimal, dayfirst)

    def _country(self, row: MappingABC[str, Any]) -> str | None:
        """The record's country as an ISO code, if it names one (names are split and
        phones chosen by it before the record is normalised)."""
        for key, target in self.fields().items():
            if target.field == "country" and isinstance(row.get(key), str):
                try:
                    return normalize.country(_lookup(target.values, row[key].strip()))
                except NormalizationError:
                    return None
        return None

    def _multi(self, lead: Lead, field: str, value: Any, region: str | None) -> None:
        """An email or phone given several times: the first valid one is the contact's,
        the others go to a list attribute (`emails`, `phones`), none is dropped."""
        given = value if isinstance(value, list) else _SEPARATED.split(str(value))
        answers = [str(v).strip() for v in given if str(v).strip()]
        if not answers:
            return
        chosen = next((a for a in answers if _valid(field, a, region)), answers[0])
        lead.fields[field] = chosen
        others = [a for a in answers if a != chosen]
        if others:
            kept = lead.custom.setdefault(MULTI[field], [])
            kept.extend(a for a in others if a not in kept)


# What Meta's lead testing tool writes into every answer it is not given
# (reference/external-apis.md §A); Leads Center exports keep it.
_DUMMY = re.compile(r"<test lead: dummy data for [^>]*>")


def _placeholder(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(_placeholder(v) for v in value)
    return isinstance(value, str) and _DUMMY.fullmatch(value.strip()) is not None


def is_test_lead(row: MappingABC[str, Any]) -> bool:
    """Whether a record comes from Meta's lead testing tool: some answer is its dummy
    text (`<test lead: dummy data for city>`)."""
    return any(_placeholder(v) for v in row.values())


def mark_test_lead(lead: Lead, lead_id: str | None) -> None:
    """A test lead is ingested, marked `is_test` (segments and audiences leave it out)
    and, when it has an id, identified by that id only: its email is Meta's shared
    `test@fb.com` or the admin's own, and must not fold a test into a real contact.
    Its email and phone are then kept as the `emails`/`phones` attributes."""
    lead.custom["is_test"] = True
    if not lead_id:
        return
    for name, kept in MULTI.items():
        value = lead.fields.pop(name, None)
        if value:
            values = lead.custom.setdefault(kept, [])
            if value not in values:
                values.insert(0, value)
    lead.problems = [p for p in lead.problems if p.field not in MULTI]
    lead.fields["external_id"] = lead_id
    lead.context["id_namespace"] = f"{lead.source}:test-lead"


def _valid(field: str, value: str, region: str | None) -> bool:
    try:
        if field == "email":
            normalize.email(value)
        else:
            normalize.phone(value, region)
    except NormalizationError:
        return False
    return True


def load_mapping(path: Path) -> Mapping:
    return validate_file(path, Mapping)


_LOADED: dict[Path, tuple[tuple[int, int], Mapping]] = {}
_LOADED_MAX = 64


def load_mapping_cached(path: Path) -> Mapping:
    """`load_mapping`, read and validated once per version of the file (its mtime and
    size): `quarantine retry` remaps every record through its mapping, and loading a
    500-column mapping per record cost 226 ms each. An edited file is read again."""
    key = Path(path).resolve()
    stat = key.stat()
    version = (stat.st_mtime_ns, stat.st_size)
    found = _LOADED.get(key)
    if found is not None and found[0] == version:
        return found[1]
    mapping = load_mapping(key)
    if len(_LOADED) >= _LOADED_MAX:
        _LOADED.clear()
    _LOADED[key] = (version, mapping)
    return mapping


def _lookup(values: dict[str, str], text: str) -> str:
    if text in values:
        return values[text]
    folded = text.casefold()
    for key, target in values.items():
        if key.casefold() == folded:
            return target
    return text


def split_name(text: str, order: str) -> tuple[str, str]:
    """(first, last) from a full name; `family_first` reads `Nguyễn Văn Hùng` as
    first `Văn Hùng`, last `Nguyễn`."""
    parts = text.split()
    if len(parts) == 1:
        return parts[0], ""
    if order == "family_first":
        return " ".join(parts[1:]), parts[0]
    return " ".join(parts[:-1]), parts[-1]


def _typed(text: str, kind: str, reading: typed.Reading) -> Any:
    if kind == "string":
        return text
    if kind == "list":
        return [text]
    if kind in ("number", "integer"):
        return typed.number(text, reading, integer=kind == "integer")
    if kind == "boolean":
        return typed.boolean(text)
    if kind == "date":
        return typed.day(text, reading)
    raise NormalizationError(f"unknown type {kind}")


__all__ = ["FieldMap", "Mapping", "is_test_lead", "load_mapping", "mark_test_lead", "split_name"]
