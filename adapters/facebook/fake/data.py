"""Synthetic, deliberately messy lead people for the Graph API emulator.

Everything comes from one `random.Random`, so a seed gives the same people every time.
The mess is the point: the same person typed twice in different ways, phones in
national and international forms, e-mails with stray case and spaces, a few invalid
values, Polish and Vietnamese diacritics. Keys follow Meta's standard question keys
(email, phone_number, full_name / first_name + last_name, city, country).
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass

COUNTRIES = ("MY", "PL", "VN", "US")

_FIRST = {
    "MY": [
        "Nur Aisyah",
        "Muhammad Hafiz",
        "Siti Nurhaliza",
        "Wei Ming",
        "Mei Ling",
        "Rajesh",
        "Priya",
        "Ahmad Faiz",
        "Kok Leong",
        "Farah",
    ],
    "PL": [
        "Łukasz",
        "Małgorzata",
        "Agnieszka",
        "Paweł",
        "Zofia",
        "Wojciech",
        "Józef",
        "Katarzyna",
        "Grzegorz",
        "Bożena",
        "Krzysztof",
        "Anna",
    ],
    "VN": [
        "Văn An",
        "Thị Bích",
        "Hoàng Nam",
        "Minh Tuấn",
        "Thị Lan",
        "Thanh Hương",
        "Quốc Bảo",
        "Thị Mai",
        "Đức Anh",
        "Ngọc Trâm",
    ],
    "US": [
        "John",
        "Mary",
        "Michael",
        "Jennifer",
        "David",
        "Linda",
        "James",
        "Patricia",
        "Robert",
        "Elizabeth",
    ],
}
_LAST = {
    "MY": ["Ahmad", "Tan", "Lim", "Abdullah", "Wong", "Kumar", "Ismail", "Lee", "Othman"],
    "PL": [
        "Wiśniewski",
        "Kowalczyk",
        "Wójcik",
        "Kamiński",
        "Lewandowska",
        "Zieliński",
        "Szymańska",
        "Woźniak",
        "Dąbrowski",
        "Kozłowska",
        "Król",
        "Pawłowski",
    ],
    "VN": ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Võ", "Đặng", "Bùi", "Đỗ", "Huỳnh"],
    "US": ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis"],
}
_CITIES = {
    "MY": ["Kuala Lumpur", "Petaling Jaya", "Johor Bahru", "George Town", "Shah Alam"],
    "PL": ["Warszawa", "Kraków", "Łódź", "Wrocław", "Poznań", "Gdańsk"],
    "VN": ["Hà Nội", "Thành phố Hồ Chí Minh", "Đà Nẵng", "Hải Phòng", "Cần Thơ"],
    "US": ["San Francisco", "Austin", "New York", "Chicago", "Seattle"],
}
_DOMAINS = {
    "MY": ["gmail.com", "yahoo.com.my", "hotmail.com"],
    "PL": ["wp.pl", "onet.pl", "gmail.com", "o2.pl"],
    "VN": ["gmail.com", "yahoo.com.vn"],
    "US": ["gmail.com", "yahoo.com", "outlook.com"],
}

# One custom question per market; multi-choice answers sometimes carry two values.
CUSTOM_QUESTIONS = {
    "budget": ["< RM 5,000", "RM 5,000 - 20,000", "> RM 20,000", "$1k-$5k", "$5k+"],
    "jakiego_produktu_szukasz": ["Kredyt hipoteczny", "Ubezpieczenie", "Konto firmowe"],
}


@dataclass
class Person:
    country: str
    first: str
    last: str
    city: str
    local_phone: str  # national significant number, digits only
    email_user: str
    email_domain: str


def _ascii(s: str) -> str:
    s = s.replace("Ł", "L").replace("ł", "l").replace("Đ", "D").replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def new_person(rng: random.Random) -> Person:
    country = rng.choice(COUNTRIES)
    first, last = rng.choice(_FIRST[country]), rng.choice(_LAST[country])
    if country == "MY":
        local = rng.choice(["12", "13", "16", "17", "19"]) + _digits(rng, 7)
    elif country == "PL":
        local = rng.choice("5678") + _digits(rng, 8)
    elif country == "VN":
        local = rng.choice(["90", "91", "93", "97", "98", "32", "86"]) + _digits(rng, 7)
    else:
        local = rng.choice(["650", "415", "212", "512"]) + "555" + _digits(rng, 4)
    user = _ascii(f"{first.split()[-1]}.{last}").lower().replace(" ", "")
    if rng.random() < 0.5:
        user += str(rng.randint(1, 99))
    return Person(
        country,
        first,
        last,
        rng.choice(_CITIES[country]),
        local,
        user,
        rng.choice(_DOMAINS[country]),
    )


def format_phone(p: Person, rng: random.Random) -> str:
    """The same number the way people actually type it: national or international."""
    n, style = p.local_phone, rng.randrange(4)
    if p.country == "MY":  # 012-345 6789 / +60 12-345 6789 / +60123456789 / 0123456789
        return [f"0{n[:2]}-{n[2:5]} {n[5:]}", f"+60 {n[:2]}-{n[2:5]} {n[5:]}", f"+60{n}", f"0{n}"][
            style
        ]
    if p.country == "PL":  # 600 700 800 / +48 600 700 800 / +48600700800 / 0048 600-700-800
        return [
            f"{n[:3]} {n[3:6]} {n[6:]}",
            f"+48 {n[:3]} {n[3:6]} {n[6:]}",
            f"+48{n}",
            f"0048 {n[:3]}-{n[3:6]}-{n[6:]}",
        ][style]
    if p.country == "VN":  # 090 123 4567 / +84 90 123 4567 / +84901234567 / 0901234567
        return [f"0{n[:2]} {n[2:5]} {n[5:]}", f"+84 {n[:2]} {n[2:5]} {n[5:]}", f"+84{n}", f"0{n}"][
            style
        ]
    return [
        f"({n[:3]}) {n[3:6]}-{n[6:]}",
        f"{n[:3]}-{n[3:6]}-{n[6:]}",
        f"+1 {n[:3]} {n[3:6]} {n[6:]}",
        f"1-{n[:3]}-{n[3:6]}-{n[6:]}",
    ][style]


def format_email(p: Person, rng: random.Random) -> str:
    e = f"{p.email_user}@{p.email_domain}"
    style = rng.randrange(5)
    if style == 1:
        e = e.title()
    elif style == 2:
        e = e.upper()
    elif style == 3:
        e = f" {e} "
    elif style == 4:
        e = e[0].upper() + e[1:] + " "
    return e


def format_names(p: Person, rng: random.Random, again: bool) -> tuple[str, str]:
    first, last = p.first, p.last
    if again:  # the second time round: no diacritics, caps lock, or stray spaces
        style = rng.randrange(3)
        if style == 0:
            first, last = _ascii(first), _ascii(last)
        elif style == 1:
            first, last = first.upper(), last.upper()
        else:
            first, last = f" {first}", f"{last}  "
    return first, last


def full_name(p: Person, first: str, last: str) -> str:
    # Vietnamese and (often) Malaysian Chinese names put the family name first.
    if p.country == "VN" or (p.country == "MY" and p.last in ("Tan", "Lim", "Wong", "Lee")):
        return f"{last} {first}"
    return f"{first} {last}"


def field_data(
    p: Person,
    keys: list[str],
    custom: dict[str, list[str]],
    rng: random.Random,
    *,
    again: bool,
    bad: bool,
) -> dict[str, str | list[str]]:
    """Answers for one submission, keyed by question key, in form order."""
    first, last = format_names(p, rng, again)
    out: dict[str, str | list[str]] = {}
    for key in keys:
        if key == "email":
            out[key] = format_email(p, rng)
        elif key == "phone_number":
            out[key] = format_phone(p, rng)
        elif key == "full_name":
            out[key] = full_name(p, first, last)
        elif key == "first_name":
            out[key] = first
        elif key == "last_name":
            out[key] = last
        elif key == "city":
            out[key] = p.city if not again else _ascii(p.city)
        elif key == "country":
            out[key] = p.country
        elif key in custom:
            options = custom[key]
            if len(options) > 1 and rng.random() < 0.15:
                out[key] = rng.sample(options, 2)
            else:
                out[key] = rng.choice(options)
    if bad:
        which = rng.randrange(2)
        if which == 0 and "email" in out:
            out["email"] = str(out["email"]).replace("@", rng.choice([".", " at ", ""]))
        elif "phone_number" in out:
            out["phone_number"] = rng.choice(["123", "+48 12", "000-000", "0", "+60 1"])
    return out
