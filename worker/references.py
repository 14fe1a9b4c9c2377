"""Inputs named from imagedock's own bucket: `{"s3": "apiframe/<jobId>/1.png"}` wherever a route
takes the URL of an image, a video or audio (`image`, `mask`, `video`, `image_input` items...).

Apiframe is sent a presigned GET URL in its place, made once per job and kept with the record
until Apiframe has the job (never shown: it is a bearer credential), so a submit retried with
the same Idempotency-Key sends the same body. The URL outlives the longest a job may wait.
Only objects under imagedock's prefix that exist may be named; anything else is refused
before Apiframe is called, naming the field.
"""

import re
from collections.abc import Iterator
from typing import Any

from worker.landing.storage import ObjectStore

KEY = "s3"
# The most a request may name: each costs a HEAD to S3 and a signature. Apiframe's routes take
# at most 14 reference images (`image_input`), a mask and a start and an end frame.
MOST = 16
# What follows the prefix in the key of a file imagedock landed: its job id, then its name.
LANDED_NAME = (
    r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}/[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
)
SIGV4_LONGEST = 7 * 24 * 3600  # seconds: the longest a SigV4 presigned URL may live


class BadReference(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def is_reference(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {KEY} and isinstance(value[KEY], str)


def references(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every `(field path, key)` named in `value`, however deep."""
    if is_reference(value):
        yield path, value[KEY]
    elif isinstance(value, dict):
        for name, inner in value.items():
            yield from references(inner, f"{path}.{name}" if path else str(name))
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            yield from references(inner, f"{path}.{n}")


def replaced(value: Any, urls: dict[str, str]) -> Any:
    """`value` with each reference replaced by its key's URL."""
    if is_reference(value):
        return urls[value[KEY]]
    if isinstance(value, dict):
        return {name: replaced(inner, urls) for name, inner in value.items()}
    if isinstance(value, list):
        return [replaced(inner, urls) for inner in value]
    return value


async def check(store: ObjectStore, params: dict[str, Any], block: str) -> None:
    """Refuse a reference outside imagedock's prefix, or to an object that does not exist;
    `block` names the params block in the caller's words."""
    named = list(references(params))
    if len(named) > MOST:
        raise BadReference(block or "params", f"names {len(named)} objects; at most {MOST}")
    landed = re.compile(re.escape(store.prefix) + LANDED_NAME)
    for path, key in named:
        field = f"{block}.{path}" if block else path
        if not landed.fullmatch(key):
            raise BadReference(
                field,
                f"{key[:200]!r} is not a file imagedock landed ({store.prefix}<jobId>/<name>)",
            )
        if await store.stat(key) is None:
            raise BadReference(field, f"s3://{store.bucket}/{key[:200]} does not exist")


async def resolve(store: ObjectStore, params: dict[str, Any], seconds: int) -> dict[str, Any]:
    """`params` with every reference a presigned GET URL living `seconds`."""
    named = sorted({key for _, key in references(params)})
    if not named:
        return params
    urls = await store.presign(named, min(seconds, SIGV4_LONGEST))
    resolved: dict[str, Any] = replaced(params, urls)
    return resolved
