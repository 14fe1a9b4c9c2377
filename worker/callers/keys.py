"""The callers of Apiframe's own API as imagedock serves it: each a name and a key
(`IMAGEDOCK_CALLER_KEYS`). A caller sees its own jobs only, and its webhooks are signed as
Apiframe signs them, with the SHA-256 digest of its key, so its Apiframe client's own
`verifyWebhook` accepts them.

Keys are held as their digests and compared in constant time, every one of them on every
lookup, so neither the answer's timing nor a log line can tell a key or how much of one matched.
"""

import hashlib
import hmac
from collections.abc import Mapping

from pydantic import SecretStr

from worker.apiframe.signatures import sign

OPERATOR = "operator"  # whose jobs imagedock's own API submits: every one is the operator's


class Callers:
    def __init__(self, keys: Mapping[str, SecretStr]) -> None:
        self._keys = dict(keys)
        self._digests = {
            name: hashlib.sha256(key.get_secret_value().encode()).digest()
            for name, key in keys.items()
        }

    def __bool__(self) -> bool:
        return bool(self._digests)

    def identify(self, given: str) -> str | None:
        """The name of the caller whose key `given` is, or None."""
        digest = hashlib.sha256(given.encode()).digest()
        found = None
        for name, expected in self._digests.items():
            if hmac.compare_digest(digest, expected):  # every key compared, found or not
                found = name
        return found

    def signature(self, name: str, body: bytes) -> str | None:
        """The `X-Webhook-Signature` for the caller's webhook `body`, as Apiframe's SDK checks
        it; None for a caller no longer configured."""
        key = self._keys.get(name)
        return sign(body, key.get_secret_value()) if key is not None else None
