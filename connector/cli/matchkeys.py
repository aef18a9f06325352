"""`leadsync match-keys`: Meta match keys for JSON lines on stdin."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
import typer.main

from connector import normalize
from connector.cli import (
    app,
    print_json,
)

# -- match keys -------------------------------------------------------------------------


# The keys `match-keys` reads, and Meta's short names for them (its match key names).
MATCH_FIELDS = ("email", "phone", "first_name", "last_name", "city", "state", "zip",
                "country", "date_of_birth", "gender", "external_id")  # fmt: skip
META_ALIASES = {"em": "email", "ph": "phone", "fn": "first_name", "ln": "last_name",
                "ct": "city", "st": "state", "zp": "zip", "db": "date_of_birth",
                "dob": "date_of_birth", "ge": "gender", "gen": "gender",
                "extern_id": "external_id"}  # fmt: skip


def canonical_keys(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A record with Meta's short keys (`em`, `ph`, `fn`, `ct`...) renamed to the fields
    they mean, and an error for every key that is neither: never silently ignored."""
    fields: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in record.items():
        name = META_ALIASES.get(key.lower(), key.lower())
        if name not in MATCH_FIELDS:
            errors[key] = f"not a key match-keys reads; use one of {', '.join(MATCH_FIELDS)}"
        elif name in fields:
            errors[key] = f"{name} given twice"
        else:
            fields[name] = value
    return fields, errors


@app.command(
    "match-keys",
    epilog="Keys read: " + ", ".join(MATCH_FIELDS) + "; Meta's short names are accepted "
    "too (" + ", ".join(f"{k}={v}" for k, v in META_ALIASES.items()) + "). Any other key "
    "is reported in `errors`.",
)
def match_keys(
    region: str | None = typer.Option(
        None, "--region", metavar="CC", help="Default country (e.g. MY)."
    ),
) -> None:
    """Meta match keys for JSON lines on stdin: normalised value and SHA-256 per key,
    and the reason for every value that cannot be normalised."""
    region = region.upper() if region else None
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            print_json(
                {"line": number, "match_keys": {}, "errors": {"_": f"not a JSON object: {exc}"}}
            )
            continue
        fields, refused = canonical_keys(record)
        keys, errors = normalize.match_keys(fields, region)
        print_json({**record, "match_keys": keys, "errors": {**refused, **errors}})
