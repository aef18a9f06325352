"""Normalisation: Meta's worked examples, the formats our markets write, idempotence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector import normalize as n
from connector.normalize import NormalizationError

# reference/external-apis.md §B, the five official examples.
META = [
    ("email", "John_Smith@gmail.com", "john_smith@gmail.com",
     "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
    ("phone", "(650)555-1212", "16505551212",
     "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"),
    ("first_name", "Mary", "mary",
     "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
    ("last_name", "정", "정",
     "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"),
    ("first_name", "Valéry", "valéry",
     "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"),
]  # fmt: skip
KEY = {"email": "EMAIL", "phone": "PHONE", "first_name": "FN", "last_name": "LN"}


@pytest.mark.parametrize(("field", "raw", "normalized", "digest"), META)
def test_metas_worked_examples(field: str, raw: str, normalized: str, digest: str) -> None:
    keys, errors = n.match_keys({field: raw}, "US")
    assert errors == {}
    assert keys[KEY[field]] == {"normalized": normalized, "sha256": digest}


def test_decomposed_accents_hash_like_composed() -> None:
    # "Valéry" typed with a combining accent (NFD) must hash as Meta's NFC example.
    keys, _ = n.match_keys({"first_name": "Vale\u0301ry"})
    assert keys["FN"]["sha256"] == META[4][3]


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("012-345 6789", "MY", "+60123456789"),
        ("+60 12-345 6789", None, "+60123456789"),
        ("0060123456789", None, "+60123456789"),
        ("600 700 800", "PL", "+48600700800"),
        ("+48 601-234-567", "VN", "+48601234567"),  # a code beats the region
        ("0912 345 678", "VN", "+84912345678"),
        ("(650) 555-1212", "US", "+16505551212"),
        ("650.555.0199", "US", "+16505550199"),
    ],
)
def test_phones_become_e164(raw: str, region: str | None, e164: str) -> None:
    assert n.phone(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("12345", "MY", "not a valid phone number"),
        ("012-345 6789", None, "no country code and no default region"),
        ("call me", "PL", "not a phone number"),
        ("+999 123", None, "not a"),
    ],
)
def test_impossible_phones_are_reported_not_guessed(
    raw: str, region: str | None, reason: str
) -> None:
    with pytest.raises(NormalizationError, match=reason):
        n.phone(raw, region)


@pytest.mark.parametrize(
    ("raw", "out"),
    [
        (" SITI.NURHALIZA@Gmail.com ", "siti.nurhaliza@gmail.com"),
        ("mailto:A@B.PL", "a@b.pl"),
        ("użytkownik@przykład.pl", "użytkownik@przykład.pl"),
    ],
)
def test_emails(raw: str, out: str) -> None:
    assert n.email(raw) == out


@pytest.mark.parametrize(
    "raw", ["not-an-email", "a@", "@b.com", "a b@c.com", "a@b..com", "a@-b.com"]
)
def test_bad_emails(raw: str) -> None:
    with pytest.raises(NormalizationError, match="invalid address"):
        n.email(raw)


@pytest.mark.parametrize(
    ("raw", "code"),
    [("Malaysia", "MY"), ("Polska", "PL"), ("Việt Nam", "VN"), ("Vietnam", "VN"),
     ("vnm", "VN"), ("USA", "US"), ("United States", "US"), ("uk", "GB"), ("pl", "PL"),
     ("Korea, Republic of", "KR")],
)  # fmt: skip
def test_countries(raw: str, code: str) -> None:
    assert n.country(raw) == code


def test_unknown_country() -> None:
    with pytest.raises(NormalizationError, match="unknown country"):
        n.country("Atlantis")


def test_places_and_names_keys() -> None:
    assert n.name_key("  Nguyễn   Thị ") == "nguyễn thị"
    assert n.name_key("O'Brien-Smith") == "obriensmith"
    assert n.city_key("Thành phố Hồ Chí Minh") == "thànhphốhồchíminh"
    assert n.city_key("St. Louis") == "stlouis"
    assert n.state_key("California", "US") == "ca"
    assert n.state_key("NY", "US") == "ny"
    assert n.state_key("Mazowieckie", "PL") == "mazowieckie"
    assert n.zip_key("94107-1234", "US") == "94107"
    assert n.zip_key("SW1A 1AA", "GB") == "sw1a1"
    assert n.zip_key("00-950", "PL") == "00-950"
    with pytest.raises(NormalizationError, match="US ZIP"):
        n.zip_key("ABC", "US")


@pytest.mark.parametrize(
    ("raw", "region", "iso"),
    [("1990-05-07", None, "1990-05-07"), ("19900507", None, "1990-05-07"),
     ("07/05/1990", "PL", "1990-05-07"), ("05/07/1990", "US", "1990-05-07"),
     ("25.12.1985", "US", "1985-12-25"), ("1990-05-07T00:00:00", None, "1990-05-07")],
)  # fmt: skip
def test_dates_of_birth(raw: str, region: str | None, iso: str) -> None:
    assert n.date_of_birth(raw, region) == iso
    assert n.dob_keys(iso) == dict(zip(("DOBY", "DOBM", "DOBD"), iso.split("-"), strict=True))


@pytest.mark.parametrize("raw", ["31/02/1990", "1850-01-01", "yesterday", "1/2/90"])
def test_bad_dates(raw: str) -> None:
    with pytest.raises(NormalizationError):
        n.date_of_birth(raw, "PL")


@pytest.mark.parametrize(
    ("raw", "out"),
    [("Male", "m"), ("F", "f"), ("Kobieta", "f"), ("Mężczyzna", "m"), ("Perempuan", "f"),
     ("Lelaki", "m"), ("Nữ", "f"), ("Nam", "m"), ("prefer not to say", None), ("Other", None)],
)  # fmt: skip
def test_genders(raw: str, out: str | None) -> None:
    assert n.gender(raw) == out


def test_gender_garbage_is_an_error() -> None:
    with pytest.raises(NormalizationError, match="not a gender"):
        n.gender("banana")


def test_match_keys_reads_phone_in_the_records_country_and_names_errors() -> None:
    keys, errors = n.match_keys(
        {"phone": "012-345 6789", "country": "Malaysia", "email": "nope", "gender": "x",
         "date_of_birth": "1990-05-07", "external_id": "crm-7"},
        region="US",
    )  # fmt: skip
    assert keys["PHONE"]["normalized"] == "60123456789"
    assert keys["COUNTRY"]["normalized"] == "my"
    assert (keys["DOBY"]["normalized"], keys["DOBM"]["normalized"]) == ("1990", "05")
    assert keys["EXTERN_ID"]["normalized"] == "crm-7"
    assert "GEN" not in keys and "gender" not in errors  # "x" means not said
    assert set(errors) == {"email"}
    assert list(keys) == [k for k in n.MATCH_KEY_NAMES if k in keys]


# -- idempotence: normalise(normalise(x)) == normalise(x) ------------------------------

text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


def _idempotent(fn, value):  # type: ignore[no-untyped-def]
    try:
        once = fn(value)
    except NormalizationError:
        return
    if once is None:
        return
    assert fn(once) == once


@settings(max_examples=300)
@given(text)
def test_text_normalisers_are_idempotent(value: str) -> None:
    for fn in (n.name, n.name_key, n.city_key, n.gender, n.country, n.email):
        _idempotent(fn, value)
    _idempotent(lambda v: n.state_key(v, "US"), value)
    _idempotent(lambda v: n.state_key(v, "PL"), value)
    _idempotent(lambda v: n.zip_key(v, "US"), value)
    _idempotent(lambda v: n.zip_key(v, "GB"), value)
    _idempotent(lambda v: n.zip_key(v, "PL"), value)


phone_like = st.builds(
    lambda prefix, digits, seps: (
        prefix + "".join(d + s for d, s in zip(digits, seps, strict=False))
    ),
    st.sampled_from(["", "+", "00", "0", "+60 ", "+48", "+84 ", "+1 ("]),
    st.lists(st.sampled_from("0123456789"), min_size=6, max_size=13),
    st.lists(st.sampled_from(["", "", " ", "-", ".", ")"]), min_size=13, max_size=13),
)


@settings(max_examples=500)
@given(phone_like, st.sampled_from(["MY", "PL", "VN", "US", None]))
def test_phone_is_idempotent(value: str, region: str | None) -> None:
    _idempotent(lambda v: n.phone(v, region), value)


@settings(max_examples=500)
@given(phone_like, st.sampled_from(["MY", "PL", "VN", "US", None]))
def test_meta_phone_key_reads_its_own_form_back(value: str, region: str | None) -> None:
    # Meta's PHONE has no `+`, so its digits are ambiguous where they also make a valid
    # national number (6042000000 is Malaysian in Meta's form and a Vancouver number in
    # the US: hypothesis found it). Without a region they are always read as Meta's;
    # in a region, a key is the key of the record's E.164 number.
    _idempotent(lambda v: n.phone_key(v, None), value)
    try:
        e164 = n.phone(value, region)
    except NormalizationError:
        return
    assert n.phone_key(e164, region) == n.phone_key(value, region) == e164.lstrip("+")
    assert n.phone_key("48601234567", "US") == "48601234567"  # not a US number: Meta's
    assert n.phone_key("6042000000", "US") == "16042000000"  # a US number: read as one


@given(
    st.emails(),
    st.sampled_from(["", " ", "  "]),
)
def test_generated_emails_normalise_idempotently(address: str, pad: str) -> None:
    once = n.email(pad + address.upper() + pad)
    assert once == once.strip().lower() and n.email(once) == once


@given(st.dates())
def test_dates_round_trip(day) -> None:  # type: ignore[no-untyped-def]
    iso = day.isoformat()
    try:
        out = n.date_of_birth(iso)
    except NormalizationError as exc:
        assert "outside" in exc.reason or len(iso) != 10
        return
    assert out == iso and n.date_of_birth(out) == out


# -- the fast paths agree with the libraries they shortcut ---------------------------

REGIONS = ["MY", "PL", "VN", "US", "GB", "DE", "IT", "AR", "MX", "BR", "RU", "IN", "JP", "AU", "FR"]


def _library_phone(text: str, region: str | None) -> str | None:
    """The oracle: phonenumbers itself, given the text and the region as they are."""
    import phonenumbers

    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _ours(text: str, region: str | None) -> str | None:
    try:
        return n.phone(text, region)
    except NormalizationError:
        return None


@settings(max_examples=3000)
@given(
    st.sampled_from(["", "+", "00", "0", "1", "8", "011", "0011", "001", "+0", "+00"]),
    st.integers(min_value=10**5, max_value=10**12),
    st.sampled_from(REGIONS),
    st.sampled_from(["", " ", "-", "."]),
)
def test_phone_agrees_with_phonenumbers(prefix: str, digits: int, region: str, sep: str) -> None:
    body = str(digits)
    text = prefix + sep.join([body[:3], body[3:6], body[6:]])
    assert _ours(text, region) == _library_phone(text, region), text


def _dialling_prefixes() -> dict[str, str]:
    """Each region's international prefix as its people dial it (`0011` from AU)."""
    import phonenumbers

    out = {}
    for region in phonenumbers.SUPPORTED_REGIONS:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        assert meta is not None
        prefix = meta.preferred_international_prefix or meta.international_prefix
        if prefix and prefix.isdigit():
            out[region] = prefix
    return out


def test_phone_agrees_with_phonenumbers_on_every_regions_examples() -> None:
    """Every region's example numbers, in national form in their region, and with every
    region's international prefix as dialled from there: our reading is
    phonenumbers' reading, fast path or not."""
    import phonenumbers

    idd = _dialling_prefixes()
    assert idd["AU"] == "0011" and idd["US"] == "011" and idd["PL"] == "00"
    examples = [
        example
        for region in sorted(phonenumbers.SUPPORTED_REGIONS)
        if (example := phonenumbers.example_number(region)) is not None
    ]
    fast = checked = 0
    for example in examples:
        home = phonenumbers.region_code_for_number(example)
        national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
        cases = [(national, home), (f"+{example.country_code}{example.national_number}", None)]
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        cases += [(f"{prefix} {e164[1:]}", region) for region, prefix in idd.items()]
        for text, region in cases:
            checked += 1
            fast += n._fast_e164(text, region) is not None
            assert _ours(text, region) == _library_phone(text, region), (text, region)
    assert checked > 50_000
    # The fast path still takes most of what people write (national, +, 00 and kin).
    assert fast > checked / 2, (fast, checked)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("0011 32 12 34 56 78", "AU", "+3212345678"),  # Belgian, dialled from Australia
        ("011 48 600 700 800", "US", "+48600700800"),
        ("001 1 650 555 1212", "SG", "+16505551212"),  # SG: 001 is a whole prefix
        ("00 48 600 700 800", "PL", "+48600700800"),
    ],
)
def test_international_prefixes_are_read_in_the_region(raw: str, region: str, e164: str) -> None:
    assert n.phone(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region"),
    [("+048600700800", None), ("00048600700800", "PL"), ("+001 415 555 0123", None)],
)
def test_phones_phonenumbers_rejects_are_rejected(raw: str, region: str | None) -> None:
    assert _library_phone(raw, region) is None
    with pytest.raises(NormalizationError):
        n.phone(raw, region)


@settings(max_examples=1000)
@given(
    st.text(
        alphabet=st.characters(categories=("Ll", "Lu", "Lo", "Nd"), include_characters="._-+"),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from(["gmail.com", "wp.pl", "przykład.pl", "fpt.vn"]),
)
def test_email_fast_path_agrees_with_email_validator(local: str, domain: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    address = f"{local}@{domain}"
    try:
        expected: str | None = validate_email(
            address.strip().lower(), check_deliverability=False
        ).normalized.lower()
    except EmailNotValidError:
        expected = None
    try:
        got: str | None = n.email(address)
    except NormalizationError:
        got = None
    assert got == expected


# -- names: a spelling with less information never replaces a richer one -------------


@pytest.mark.parametrize(
    ("old", "new", "kept"),
    [
        ("Nguyễn Văn Hùng", "Nguyen Van Hung", "Nguyễn Văn Hùng"),
        ("Nguyen Van Hung", "Nguyễn Văn Hùng", "Nguyễn Văn Hùng"),
        ("Małgorzata Wójcik", "Malgorzata Wojcik", "Małgorzata Wójcik"),
        ("Małgorzata Wójcik", "MAŁGORZATA WÓJCIK", "Małgorzata Wójcik"),
        ("JOHN SMITH", "John Smith", "John Smith"),
        ("John Smith", "john smith", "John Smith"),
        ("Anna", "Anne", "Anne"),  # another name: news
        ("Søren", "Soren", "Søren"),
        ("정민준", "정민준", "정민준"),
    ],
)
def test_richer_name(old: str, new: str, kept: str) -> None:
    assert n.richer_name(old, new) == kept


def _plain(text: str) -> str:
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@given(st.text(alphabet="aăâbcdđeêéèghiíìklmnoôơóòpqrstuưúùvxyýỳ ", min_size=1, max_size=30))
def test_a_name_never_loses_its_accents_or_case_to_a_plainer_spelling(name: str) -> None:
    rich = name.title()
    for plain in (_plain(rich), rich.upper(), rich.lower(), _plain(rich).lower()):
        assert n.richer_name(rich, plain) == rich
        # and a richer spelling replaces a plainer one (on a tie the old one stays)
        if n._information(rich) > n._information(plain):
            assert n.richer_name(plain, rich) == rich
