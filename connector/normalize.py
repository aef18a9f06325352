"""Normalisation: one spelling per value, so the same person matches however they typed.

Two layers:
- *store values* (`email`, `phone`, `name`, `country`, `date_of_birth`, `gender`): what
  the contact store keeps. Readable (E.164 phones with `+`, names in their own case),
  and the source of identity keys.
- *match keys* (`match_keys`, `*_key`): what leaves for the ad platform, following
  Meta's rules for customer information (reference/external-apis.md §B): lowercase,
  no punctuation, non-Latin letters kept as UTF-8 (NFC), then SHA-256 as lowercase hex.

Every function is idempotent (`f(f(x)) == f(x)`, property-tested) and raises
`NormalizationError` with a reason a person can act on, never guesses: a phone that
cannot be valid is reported, not padded into something that looks like one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email


class NormalizationError(ValueError):
    """A value that cannot be normalised; `reason` says why in words for the admin."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sha256(value: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes, as Meta expects."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


_UNSPLIT = {"đ": "d", "ł": "l", "ø": "o", "æ": "ae", "œ": "oe", "ı": "i", "ħ": "h"}


def _fold(value: str) -> str:
    """Case- and accent-insensitive form used to look words up (not stored)."""
    if value.isascii():  # no accents, nothing NFKD changes: the same result, faster
        bare = value.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", value.casefold())
        bare = "".join(c for c in decomposed if not unicodedata.combining(c))
        for letter, plain in _UNSPLIT.items():  # letters NFKD does not split
            bare = bare.replace(letter, plain)
    return " ".join(re.sub(r"[^\w]+", " ", bare).split())


# -- email ----------------------------------------------------------------------------

# RFC 5322 dot-atom, with letters and digits of any script (RFC 6531): what nearly
# every real address is. Checking it here and the domain once per distinct domain
# (cached) is ~10x faster than a full validation per address; anything unusual
# (quoted local parts, symbols outside atext) takes the full path.
_ATEXT = r"[\w!#$%&'*+/=?^`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")


@functools.lru_cache(maxsize=65536)
def _domain(domain: str) -> str:
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).domain.lower()
    except EmailNotValidError as exc:
        raise NormalizationError(f"invalid address ({_email_reason(exc)})") from None


def _email_reason(exc: EmailNotValidError) -> str:
    # email_validator's messages quote parts of the address: reasons are categories.
    text = str(exc)
    if "before the @" in text:
        return "the part before the @"
    if "after the @" in text or "domain" in text.lower():
        return "the domain"
    return "its syntax"


def email(value: str) -> str:
    """Trimmed, lowercased, syntax-checked address (no DNS lookup: ingest must not
    depend on the network, and Meta matches on the string anyway)."""
    text = unicodedata.normalize("NFC", value.strip().lower())
    if text.startswith("mailto:"):
        text = text[7:]
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise NormalizationError("invalid address (it needs one @ with a name and domain)")
    if len(local) <= 64 and _DOT_ATOM.fullmatch(local):
        return f"{local}@{_domain(domain)}"
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise NormalizationError(f"invalid address ({_email_reason(exc)})") from None
    return checked.normalized.lower()


# -- phone ----------------------------------------------------------------------------


def phone(value: str, region: str | None = None) -> str:
    """E.164 (`+60123456789`). A number without a country code is read in `region`
    (the record's country, else the source's, else the deployment's), international
    prefixes included: from AU `0011 32 12 34 56 78` is the Belgian +3212345678.
    phonenumbers is the one truth; numbers it does not find valid are an error, never
    guessed."""
    text = value.strip()
    if not text:
        raise NormalizationError("empty phone number")
    region = region.upper() if region else None
    fast = _fast_e164(text, region)
    if fast is not None:
        return fast
    if not region and not text.startswith("+"):
        if not text.startswith("00"):
            raise NormalizationError(
                "no country code and no default region: write it as +<country code>… "
                "or set default_region"
            )
        # With no region to say which international prefix was dialled, 00 (ITU's
        # recommended one, dialled in most of the world) is the only reading.
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise NormalizationError(f"not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_number(number) or region or "any country"
        raise NormalizationError(f"not a valid phone number for {where}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# The fast path: `phonenumbers.parse` is 60% of a phone's cost and most of its work is
# for shapes people rarely type (extensions, vanity letters, carrier codes). Plain digit
# strings (`+` or the region's international prefix and a country code, or a national
# number) are split here, and only a number that phonenumbers then says is valid is
# taken; anything else (a national or carrier prefix phonenumbers may strip, a region
# whose parsing rewrites numbers) goes the full way. tests/unit/test_normalize.py
# proves both ways give the same answer for every region's example numbers written with
# every region's international prefix and in national form, and for random digits.
_SEPARATORS = re.compile(r"[\s().\-/]+")


@dataclass(frozen=True, slots=True)
class _Rules:
    code: int
    national_prefix: re.Pattern[str] | None
    international_prefix: re.Pattern[str] | None


@functools.lru_cache(maxsize=512)
def _region_rules(region: str) -> _Rules | None:
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    if meta is None or meta.national_prefix_transform_rule:
        return None  # e.g. Argentina rewrites numbers while parsing: full path
    pattern = meta.national_prefix_for_parsing
    rx = re.compile(pattern) if pattern else None
    if rx is not None and rx.groups:
        return None  # carrier codes captured while stripping: full path
    idd = re.compile(meta.international_prefix) if meta.international_prefix else None
    return _Rules(int(meta.country_code or 0), rx, idd)


@functools.lru_cache(maxsize=512)
def _code_rules(code: int) -> _Rules | None:
    region = phonenumbers.region_code_for_country_code(code)
    return _region_rules(region) if region != phonenumbers.UNKNOWN_REGION else None


def _fast_e164(text: str, region: str | None) -> str | None:
    compact = _SEPARATORS.sub("", text)
    international = compact.startswith("+")
    digits = compact[1:] if international else compact
    if not (digits.isascii() and digits.isdigit()):
        return None
    home = None if international or not region else _region_rules(region)
    if home is not None and home.international_prefix is not None:
        # Dialled with the region's own international prefix (00 from PL, 0011 from
        # AU): phonenumbers strips it unless a 0 follows, then reads a country code.
        dialled = home.international_prefix.match(digits)
        if dialled:
            digits, international = digits[dialled.end() :], True
    if international:
        if not digits or digits[0] == "0":
            return None  # no country code: phonenumbers says what it is
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                national = digits[size:]
                break
        else:
            return None
        rules = _code_rules(code)
        if rules is None or (rules.national_prefix and rules.national_prefix.match(national)):
            return None  # phonenumbers may strip a national prefix after the code
    else:
        if home is None:
            return None
        code, national = home.code, digits
        if home.national_prefix is not None:
            match = home.national_prefix.match(digits)
            if match and match.end():
                national = digits[match.end() :]
    if not national or national[0] == "0" or len(national) > 17:
        return None  # leading zeros are kept by some countries (Italy): full path
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    return f"+{code}{national}" if phonenumbers.is_valid_number(number) else None


def phone_key(value: str, region: str | None = None) -> str:
    """Meta's PHONE: digits with the country code, no `+` or leading zeros.

    A value already in that form (`48601234567`) is taken as such when it is not a
    valid number of `region` read nationally: without a region it always reads back as
    itself. Digits that are also a valid national number of `region` (`6042000000` in
    the US) are read nationally; they are ambiguous, and the record's country decides."""
    try:
        return phone(value, region).lstrip("+")
    except NormalizationError:
        text = value.strip()
        if text.isdigit() and text[0] != "0":
            with contextlib.suppress(NormalizationError):
                return phone("+" + text).lstrip("+")
        raise  # the national reading's reason


# -- names and places -----------------------------------------------------------------


def name(value: str) -> str:
    """A name as the store keeps it: NFC, trimmed, inner whitespace collapsed, case kept."""
    return " ".join(unicodedata.normalize("NFC", value).split())


def richer_name(old: str | None, new: str) -> str:
    """Which spelling of a name (or place) the store keeps when a new one arrives.

    A spelling that differs only by accents or case is the same name written with less
    or more care: `Nguyen Van Hung` after `Nguyễn Văn Hùng`, `MALGORZATA WOJCIK` after
    `Małgorzata Wójcik` keep the old one. The one with more information wins: more
    letters with diacritics first (they cannot be guessed back), then mixed case over
    all-upper or all-lower; on a tie the old one stays. A name that differs otherwise is
    news and replaces the old one."""
    if not old:
        return new
    better = better_spelling(old, new)
    if better is not None:
        return better
    return old if _fold(old) == _fold(new) else new  # a tie keeps the old; news replaces


def better_spelling(current: str, new: str) -> str | None:
    """Of two spellings of one value that are equal once case and accents are folded,
    the one with more information (the rule of `richer_name`); None when they are not
    the same value or neither is richer (then recency decides)."""
    if current == new:
        return None
    # _fold starts from the casefold: equal casefolds fold equal (no need to fold).
    if current.casefold() != new.casefold() and _fold(current) != _fold(new):
        return None
    have, offered = _information(current), _information(new)
    if have == offered:
        return None
    return current if have > offered else new


def _information(text: str) -> tuple[int, int]:
    marked = sum(1 for c in unicodedata.normalize("NFC", text) if _marked(c))
    mixed = int(text not in (text.upper(), text.lower()))
    return marked, mixed


@functools.lru_cache(maxsize=4096)
def _marked(c: str) -> bool:
    """Whether a character carries more than its folded letter (an accent, a stroke;
    a space or a sign folds to nothing). Characters are few: each is asked once."""
    return _fold(c) != c.casefold()


def _letters(value: str, keep_spaces: bool, digits: bool = False) -> str:
    text = unicodedata.normalize("NFC", value).lower()
    kept = []
    for c in text:
        category = unicodedata.category(c)[0]
        if category in "LM" or (digits and category == "N"):
            kept.append(c)
        elif keep_spaces and c.isspace():
            kept.append(" ")
    out = "".join(kept)
    return " ".join(out.split()) if keep_spaces else out


def name_key(value: str) -> str:
    """Meta's FN/LN: lowercase, no punctuation or digits, letters of any script kept
    (UTF-8, NFC). Inner spaces are kept single: Meta does not ask to remove them and
    compound given names (`Nguyễn Thị`) are written with them."""
    return _letters(value, keep_spaces=True)


def city_key(value: str) -> str:
    """Meta's CT: lowercase, no punctuation and no spaces."""
    return _letters(value, keep_spaces=False)


@functools.lru_cache(maxsize=1)
def _us_states() -> dict[str, str]:
    states: dict[str, str] = {}
    for sub in pycountry.subdivisions.get(country_code="US") or []:  # type: ignore[no-untyped-call]
        code = sub.code.split("-")[1].lower()
        states[_fold(sub.name)] = code
        states[code] = code
    return states


def state_key(value: str, country_code: str | None = None) -> str:
    """Meta's ST: for the US the 2-letter code (`California` -> `ca`); elsewhere
    lowercase with no punctuation or spaces."""
    if (country_code or "").upper() in ("US", ""):
        code = _us_states().get(_fold(value))
        if code:
            return code
        if (country_code or "").upper() == "US":
            raise NormalizationError("not a US state")
    return _letters(value, keep_spaces=False, digits=True)


_UK_POSTCODE = re.compile(r"([a-z]{1,2}\d[a-z\d]?)(\d)[a-z]{2}")


def zip_key(value: str, country_code: str | None = None) -> str:
    """Meta's ZIP: lowercase without spaces; US the first 5 digits; UK the area,
    district and sector (`SW1A 1AA` -> `sw1a1`)."""
    text = re.sub(r"\s", "", value).lower()
    cc = (country_code or "").upper()
    if cc == "US":
        digits = text.split("-")[0]
        if not re.fullmatch(r"\d{5}(\d{4})?", digits):
            raise NormalizationError("not a US ZIP code")
        return digits[:5]
    if cc == "GB":
        match = _UK_POSTCODE.fullmatch(text)
        if match:
            return match.group(1) + match.group(2)
        if re.fullmatch(r"[a-z]{1,2}\d[a-z\d]?\d?", text):
            return text  # already area/district(/sector)
        raise NormalizationError("not a UK postcode")
    if not text:
        raise NormalizationError("empty postal code")
    return text


# -- country --------------------------------------------------------------------------

# Names people type that ISO's list spells differently (folded: no case, no accents).
_COUNTRY_ALIASES = {
    "usa": "US",
    "u s a": "US",
    "u s": "US",
    "america": "US",
    "united states": "US",
    "united states of america": "US",
    "uk": "GB",
    "u k": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "polska": "PL",
    "vietnam": "VN",
    "viet nam": "VN",
    "south korea": "KR",
    "korea": "KR",
    "north korea": "KP",
    "russia": "RU",
    "deutschland": "DE",
    "espana": "ES",
    "italia": "IT",
    "nederland": "NL",
    "holland": "NL",
    "brasil": "BR",
    "mexico": "MX",
    "turkey": "TR",
    "turkiye": "TR",
    "czech republic": "CZ",
    "czechia": "CZ",
    "cesko": "CZ",
    "taiwan": "TW",
    "iran": "IR",
    "syria": "SY",
    "laos": "LA",
    "bolivia": "BO",
    "venezuela": "VE",
    "tanzania": "TZ",
    "moldova": "MD",
    "uae": "AE",
    "emirates": "AE",
    "ivory coast": "CI",
    "hong kong": "HK",
    "macau": "MO",
    "singapura": "SG",
    "filipinas": "PH",
    "pilipinas": "PH",
    "thailand": "TH",
    "prathet thai": "TH",
}


@functools.lru_cache(maxsize=1)
def _countries() -> dict[str, str]:
    table: dict[str, str] = {}
    for c in pycountry.countries:
        for attr in ("name", "official_name", "common_name", "alpha_3"):
            spelled = getattr(c, attr, None)
            if spelled:
                table[_fold(spelled)] = c.alpha_2
        table[c.alpha_2.lower()] = c.alpha_2
    table.update(_COUNTRY_ALIASES)
    return table


@functools.lru_cache(maxsize=4096)
def country(value: str) -> str:
    """ISO 3166-1 alpha-2, upper case (`Việt Nam`, `VNM`, `vn` -> `VN`)."""
    code = _countries().get(_fold(value))
    if code is None:
        raise NormalizationError("unknown country (use an ISO code like MY)")
    return code


def country_key(value: str) -> str:
    """Meta's COUNTRY: alpha-2 lowercase."""
    return country(value).lower()


# -- date of birth --------------------------------------------------------------------

_DATE_PARTS = re.compile(r"(\d{1,4})[./\- ](\d{1,2})[./\- ](\d{1,4})")
# Where people write the month first.
_MONTH_FIRST = {"US", "PH", "FM", "MH", "PW", "GU", "AS", "MP", "VI", "PR"}


def date_of_birth(value: str, region: str | None = None) -> str:
    """ISO date `YYYY-MM-DD`. Accepts ISO, `YYYYMMDD`, and day/month/year or, in the
    US, month/day/year (swapped only when the other reading is impossible)."""
    text = value.strip()
    if re.fullmatch(r"\d{8}", text):
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    text = text.split("T")[0]
    match = _DATE_PARTS.fullmatch(text)
    if not match:
        raise NormalizationError("not a date (write it as YYYY-MM-DD)")
    a, b, c = (int(p) for p in match.groups())
    if len(match.group(1)) == 4:
        year, month, day = a, b, c
    elif len(match.group(3)) == 4:
        year = c
        month_first = (region or "").upper() in _MONTH_FIRST
        month, day = (a, b) if month_first else (b, a)
        if month > 12 >= day:
            month, day = day, month
    else:
        raise NormalizationError("not a date (the year needs 4 digits)")
    try:
        born = date(year, month, day)
    except ValueError as exc:
        raise NormalizationError(f"not a date ({exc})") from None
    if not 1900 <= born.year <= date.today().year:
        raise NormalizationError("year of birth outside 1900-now")
    return born.isoformat()


def dob_keys(iso: str) -> dict[str, str]:
    """Meta's DOBY/DOBM/DOBD from an ISO date."""
    year, month, day = iso.split("-")
    return {"DOBY": year, "DOBM": month, "DOBD": day}


# -- gender ---------------------------------------------------------------------------

_GENDERS = {
    # English, Polish, Malay/Indonesian, Vietnamese
    "m": "m",
    "male": "m",
    "man": "m",
    "men": "m",
    "mr": "m",
    "boy": "m",
    "mezczyzna": "m",
    "meski": "m",
    "pan": "m",
    "lelaki": "m",
    "laki laki": "m",
    "lelaki lelaki": "m",
    "pria": "m",
    "nam": "m",
    "trai": "m",
    "f": "f",
    "female": "f",
    "woman": "f",
    "women": "f",
    "mrs": "f",
    "ms": "f",
    "girl": "f",
    "kobieta": "f",
    "zenski": "f",
    "pani": "f",
    "perempuan": "f",
    "wanita": "f",
    "nu": "f",
    "gai": "f",
}
# Answers that mean "not said": no key rather than an error.
_NOT_SAID = {
    "",
    "unknown",
    "other",
    "x",
    "n a",
    "na",
    "none",
    "u",
    "prefer not to say",
    "not specified",
    "inny",
    "inna",
    "lain lain",
    "khac",
    "khong xac dinh",
}


def gender(value: str) -> str | None:
    """Meta's GEN: `m` or `f`; None for answers that say nothing (`other`,
    `prefer not to say`); an error for text that is no gender at all."""
    folded = _fold(value)
    if folded in _GENDERS:
        return _GENDERS[folded]
    if folded in _NOT_SAID:
        return None
    raise NormalizationError("not a gender (expected m or f)")


# -- match keys -----------------------------------------------------------------------

MATCH_KEY_NAMES = (
    "EXTERN_ID", "EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD",
    "LN", "FN", "CT", "ST", "ZIP", "COUNTRY",
)  # fmt: skip


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def match_keys(
    record: Mapping[str, Any], region: str | None = None
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Meta multi-key match keys for one record of canonical fields.

    Returns `({KEY: {"normalized", "sha256"}}, {field: reason})`: every field that is
    present but cannot be normalised is named with its reason, so an admin can see why
    a match rate is low. Values are hashed here, before anything leaves.
    """
    normalized: dict[str, str] = {}
    errors: dict[str, str] = {}

    def attempt(field: str, fn: Any) -> None:
        raw = _text(record.get(field))
        if raw is None:
            return
        try:
            out = fn(raw)
        except NormalizationError as exc:
            errors[field] = exc.reason
            return
        if isinstance(out, dict):
            normalized.update(out)
        elif out:
            normalized[_FIELD_KEY[field]] = out
        elif out is not None:
            errors[field] = "nothing left after normalising (no letters)"

    attempt("country", country_key)
    cc = normalized.get("COUNTRY", "").upper() or (region.upper() if region else None)
    attempt("email", email)
    attempt("phone", lambda v: phone_key(v, cc))
    attempt("first_name", name_key)
    attempt("last_name", name_key)
    attempt("city", city_key)
    attempt("state", lambda v: state_key(v, cc))
    attempt("zip", lambda v: zip_key(v, cc))
    attempt("date_of_birth", lambda v: dob_keys(date_of_birth(v, cc)))
    attempt("gender", gender)
    attempt("external_id", lambda v: v)
    keys = {k: {"normalized": normalized[k], "sha256": sha256(normalized[k])}
            for k in MATCH_KEY_NAMES if k in normalized}  # fmt: skip
    return keys, errors


_FIELD_KEY = {
    "country": "COUNTRY", "email": "EMAIL", "phone": "PHONE", "first_name": "FN",
    "last_name": "LN", "city": "CT", "state": "ST", "zip": "ZIP", "gender": "GEN",
    "external_id": "EXTERN_ID",
}  # fmt: skip
