"""Field mappings: how a source's columns or question keys become contact fields.

One mapping language for every source (CSV columns, sheet headers, lead-form question
keys): each source key goes to a standard field, `status`, `full_name` or a typed
custom attribute, optionally through a value map (e.g. Malay or Polish status words ->
canonical statuses). Problems found here (an unknown status word, a number that is not
one) become `Problem`s on the lead, so the record is quarantined, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from connector.config import validate_file
from connector.model import STANDARD_FIELDS, Lead, Problem
from connector.statuses import Catalogue, UnknownStatusError

TARGETS = (*STANDARD_FIELDS, "status", "full_name")
_TRUE = {"1", "true", "yes", "y", "tak", "ya", "có", "co", "x", "✓"}
_FALSE = {"0", "false", "no", "n", "nie", "tidak", "không", "khong", ""}


class FieldMap(BaseModel):
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
    order: Literal["given_first", "family_first"] = Field(
        "given_first",
        description="For full_name: Vietnamese and Hungarian names put the family name first.",
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


class Mapping(BaseModel):
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
        """Map one raw record; what cannot be mapped becomes a Problem on the lead."""
        lead = Lead(source=source, ref=ref, fields={}, raw=dict(row))
        lead.region = region or self.default_region
        if self.id_namespace:
            lead.context["id_namespace"] = self.id_namespace
        for key, target in self.fields().items():
            value = row.get(key)
            if value is None:
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
            label = f"{target.field or target.custom} (column {key!r})"
            if target.custom is not None:
                try:
                    lead.custom[target.custom] = _typed(text, target.type)
                except ValueError as exc:
                    lead.problems.append(Problem(label, str(exc)))
            elif target.field == "status":
                try:
                    lead.status = catalogue.resolve(text).id
                except UnknownStatusError:
                    lead.problems.append(
                        Problem(label, f"no status for {text!r}: add it to the mapping's values")
                    )
            elif target.field == "full_name":
                first, last = _split_name(text, target.order)
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
        return lead


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


def _split_name(text: str, order: str) -> tuple[str, str]:
    parts = text.split()
    if len(parts) == 1:
        return parts[0], ""
    if order == "family_first":
        return " ".join(parts[1:]), parts[0]
    return " ".join(parts[:-1]), parts[-1]


_NUMBER_JUNK = re.compile(r"[\s\u00a0'_]")


def _typed(text: str, kind: str) -> Any:
    if kind in ("string", "list"):
        return text if kind == "string" else [text]
    if kind in ("number", "integer"):
        clean = _NUMBER_JUNK.sub("", text)
        if "," in clean and "." not in clean:
            clean = clean.replace(",", ".")  # 12,50 in PL/VN/MY spreadsheets
        try:
            number = float(clean)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if kind == "integer":
            if not number.is_integer():
                raise ValueError(f"{text!r} is not a whole number")
            return int(number)
        return number
    if kind == "boolean":
        low = text.casefold()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{text!r} is not yes/no")
    if kind == "date":
        for fmt in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%Y/%m/%d"):
            try:
                return datetime.strptime(text, fmt).date().isoformat()
            except ValueError:
                continue
        raise ValueError(f"{text!r} is not a date (use YYYY-MM-DD)")
    raise ValueError(f"unknown type {kind}")


__all__ = ["FieldMap", "Mapping", "load_mapping"]
