"""Apiframe's webhook signature: HMAC-SHA256 over the raw body, keyed by a digest of the API key.

Apiframe does not say whether the HMAC key is the raw 32-byte SHA-256 of the API key (variant A, its
own SDK) or the 64-character hex digest (variant B, independent production code), so both are
accepted and the caller learns which one matched.
"""

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Literal

Variant = Literal["A", "B"]
PREFIX = "sha256="
SIGNATURE = re.compile(r"(?:sha256=)?[0-9a-f]{64}")


@functools.cache  # one per configured key and variant: derived once, not per webhook
def signing_key(api_key: str, variant: Variant) -> bytes:
    digest = hashlib.sha256(api_key.encode())
    return digest.digest() if variant == "A" else digest.hexdigest().encode()


def sign(body: bytes, api_key: str, variant: Variant = "A") -> str:
    """The `X-Webhook-Signature` value Apiframe sends for `body`."""
    mac = hmac.new(signing_key(api_key, variant), body, hashlib.sha256)
    return PREFIX + mac.hexdigest()


def verify_signature(body: bytes, header: str, api_keys: Iterable[str]) -> Variant | None:
    """The variant whose signature matches `header` under one of `api_keys`, else None.

    Anything but 64 hex digits (with or without the `sha256=` prefix) is refused before any
    comparison; every candidate is then compared as bytes, in constant time.
    """
    given = header.strip().lower()
    if not SIGNATURE.fullmatch(given):
        return None
    digest = given.removeprefix(PREFIX).encode()
    matched: Variant | None = None
    for api_key in api_keys:
        for variant in ("A", "B"):
            expected = sign(body, api_key, variant).removeprefix(PREFIX).encode()
            if hmac.compare_digest(expected, digest) and matched is None:
                matched = variant
    return matched
