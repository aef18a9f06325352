"""A first mapping from a file's header: common column names in English, Malay, Polish
and Vietnamese recognised, so `leadsync import csv FILE` works without writing YAML
first and `leadsync mapping draft` gives the admin a commented starting point.

Headers are compared folded (case, diacritics, punctuation and spacing ignored), so
`E-mail`, `email` and `EMAIL ` are one name and `Số điện thoại` matches `so dien thoai`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from connector.statuses import Catalogue, UnknownStatusError

# Folded header -> target. Each language's usual words for the fields a lead has.
_NAMES: dict[str, tuple[str, ...]] = {
    "email": (
        "email", "e-mail", "e mail", "mail", "email address", "e-mail address",
        "emel", "alamat emel", "adres e-mail", "adres email",
        "địa chỉ email", "thư điện tử",
    ),
    "phone": (
        "phone", "phone number", "telephone", "tel", "mobile", "mobile number", "cell",
        "telefon", "no. telefon", "no telefon", "nombor telefon", "no. tel", "telefon bimbit",
        "numer telefonu", "nr telefonu", "telefon komórkowy",
        "số điện thoại", "điện thoại", "sđt", "số đt",
    ),
    "full_name": (
        "name", "full name", "contact name", "customer name",
        "nama", "nama penuh", "nama pelanggan",
        "imię i nazwisko", "nazwa klienta",
        "họ tên", "họ và tên", "tên khách hàng",
    ),
    "first_name": ("first name", "firstname", "given name", "nama pertama", "imię", "tên"),
    "last_name": (
        "last name", "lastname", "surname", "family name", "nama keluarga", "nazwisko", "họ",
    ),
    "city": ("city", "town", "bandar", "miasto", "thành phố", "tỉnh/thành phố"),
    "company": (
        "company", "company name", "organisation", "organization", "business",
        "syarikat", "nama syarikat", "firma", "nazwa firmy", "công ty", "tên công ty",
    ),
    "country": ("country", "negara", "kraj", "quốc gia"),
    "zip": ("zip", "zip code", "postcode", "postal code", "poskod", "kod pocztowy"),
    "state": ("state", "negeri", "województwo"),
    "status": ("status", "lead status", "stage", "trạng thái", "tình trạng", "etap"),
}  # fmt: skip

# Fields that identify a person; without one of them nothing can be imported.
IDENTIFYING = ("email", "phone", "external_id")


def fold(text: str) -> str:
    """A header as compared: lower case, no diacritics (đ as d), words split on
    anything that is not a letter or digit."""
    decomposed = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.findall(r"[^\W_]+", plain))


_BY_FOLDED = {fold(name): target for target, names in _NAMES.items() for name in names}


def recognise(column: str) -> str | None:
    """The target a header names, if it is a common one; bilingual headers such as
    `Miasto / City` or `Telefon (Phone)` match on either part."""
    whole = _BY_FOLDED.get(fold(column))
    if whole is not None:
        return whole
    for part in re.split(r"[/|()\[\]]", column):
        found = _BY_FOLDED.get(fold(part))
        if found is not None:
            return found
    return None


@dataclass
class Inference:
    """What a header says: column -> target, the columns left alone, the status words."""

    columns: dict[str, str] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    status_words: list[str] = field(default_factory=list)
    unknown_status_words: list[str] = field(default_factory=list)

    @property
    def identifies(self) -> bool:
        """Whether some column identifies a person (email, phone or an external id)."""
        return any(t in IDENTIFYING for t in self.columns.values())

    @property
    def status_column(self) -> str | None:
        return next((c for c, t in self.columns.items() if t == "status"), None)


def infer(
    header: Sequence[str],
    sample: Iterable[Mapping[str, str]] = (),
    catalogue: Catalogue | None = None,
) -> Inference:
    """Recognise the header's columns; the status column's words come from `sample`."""
    found = Inference()
    taken: set[str] = set()
    for column in header:
        target = recognise(column)
        if target is None or target in taken:
            found.unmatched.append(column)
            continue
        taken.add(target)
        found.columns[column] = target
    # Both a full name and its parts: the parts are more precise; keep the full name
    # only when there are no parts.
    if {"first_name", "last_name"} & taken and "full_name" in taken:
        full = next(c for c, t in found.columns.items() if t == "full_name")
        del found.columns[full]
        found.unmatched.append(full)
    status = found.status_column
    if status is not None:
        words: dict[str, None] = {}
        for row in sample:
            word = (row.get(status) or "").strip()
            if word:
                words.setdefault(word)
        found.status_words = list(words)
        cat = catalogue or Catalogue.default()
        for word in found.status_words:
            try:
                cat.resolve(word)
            except UnknownStatusError:
                found.unknown_status_words.append(word)
    return found


def refusal(header: Sequence[str]) -> str:
    """Why a file cannot be imported without a mapping: nothing identifies a person."""
    return (
        "no column identifies a person (an email, a phone or an id); the header is "
        f"{list(header)}. Write a mapping (start with `leadsync mapping draft FILE`) "
        "and pass it with --mapping."
    )


def _quote(text: str) -> str:
    """`text` as a YAML scalar: bare when that reads back the same, else JSON-quoted."""
    import json

    import yaml

    try:
        if text and text == text.strip() and yaml.safe_load(f"k: {text}") == {"k": text}:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(text, ensure_ascii=False)


def draft(found: Inference, *, source: str | None = None, region: str | None = None) -> str:
    """A commented starting mapping (YAML) for the admin to check and complete."""
    lines = [
        "# A first mapping, drafted by `leadsync mapping draft` from the file's header and",
        "# a sample of its rows. Check every line, then: leadsync config validate THIS_FILE",
    ]
    if source:
        lines.append(f"source: {_quote(source)}")
    if region:
        lines.append(f"default_region: {region}   # phones without a country code")
    else:
        lines.append("# default_region: MY   # the country of phones without a country code")
    if not found.identifies:
        lines.append("# WARNING: no column looks like an email or a phone: map one of them,")
        lines.append("# or every row is quarantined (nothing would identify the person).")
    lines.append("columns:")
    for column, target in found.columns.items():
        if target == "status":
            lines.append(f"  {_quote(column)}:")
            lines.append("    field: status")
            if found.status_words:
                lines.append("    # The status words found; assign each a status (New, Reach,")
                lines.append("    # Qualified, Disqualified, Negotiating, Won, Lost, or yours).")
                lines.append("    values:")
                for word in found.status_words:
                    known = word not in found.unknown_status_words
                    value = word if known else ""
                    note = "" if known else "   # TODO: which status is this?"
                    lines.append(f"      {_quote(word)}: {_quote(value)}{note}")
            continue
        lines.append(f"  {_quote(column)}: {target}")
    for column in found.unmatched:
        lines.append(f"  # {_quote(column)}: {{custom: {_custom_name(column)}}}   # not recognised")
    lines.append("# Columns not named here stay in each lead's stored raw record only;")
    lines.append("# `unmapped: custom` keeps them all as custom attributes instead.")
    return "\n".join(lines) + "\n"


def _custom_name(column: str) -> str:
    return "_".join(fold(column).split()) or "column"


__all__ = ["IDENTIFYING", "Inference", "draft", "fold", "infer", "refusal"]
