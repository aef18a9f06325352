"""Verify HubSpot's webhook signature, version 3 (§G).

X-HubSpot-Signature-v3 = Base64(HMAC-SHA256(key=app client secret,
message = method + URI + raw body + X-HubSpot-Request-Timestamp)). Deliveries whose
timestamp is more than 5 minutes old are rejected (a replay); the comparison is of
bytes, in constant time. The body is the raw bytes as received: never decoded and
re-encoded, so non-UTF-8 or re-serialised JSON cannot verify by accident.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable

MAX_AGE_MS = 5 * 60 * 1000
# HubSpot decodes only these percent-escapes in the URI it signs (§G).
_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ESCAPE = re.compile("|".join(_DECODED), re.IGNORECASE)


def signed_uri(uri: str) -> str:
    """The URI as HubSpot signs it: only the listed escapes decoded, the rest kept."""
    return _ESCAPE.sub(lambda m: _DECODED[m.group(0).upper()], uri)


def expected(secret: bytes, method: str, uri: str, body: bytes, timestamp: str) -> bytes:
    """The v3 signature (Base64 text, as bytes) for a request."""
    message = method.upper().encode() + signed_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest())


def verify_v3(
    secret: str | bytes,
    *,
    method: str,
    uri: str,
    body: bytes,
    signature: str | bytes | None,
    timestamp: str | None,
    now: Callable[[], float] = time.time,
    max_age_ms: int = MAX_AGE_MS,
) -> bool:
    """True only for a fresh, correctly signed request. Header values that are not
    ASCII (HTTP servers hand them over latin-1 decoded) or not digits are simply
    invalid, never an exception."""
    if not signature or not timestamp or not timestamp.isascii() or not timestamp.isdigit():
        return False
    age = now() * 1000 - int(timestamp)
    # A timestamp far in the future is as suspect as an old one (a forged clock).
    if age > max_age_ms or age < -max_age_ms:
        return False
    if isinstance(signature, str):
        try:
            signature = signature.strip().encode("ascii")
        except UnicodeEncodeError:
            return False
    key = secret.encode() if isinstance(secret, str) else secret
    try:
        want = expected(key, method, uri, body, timestamp)
    except UnicodeEncodeError:  # a URI with characters no HTTP request line can carry
        return False
    return hmac.compare_digest(want, signature)
