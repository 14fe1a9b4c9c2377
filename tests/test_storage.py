"""S3 writes over TLS, where boto3 sends aws-chunked bodies with checksum trailers: the upload
path production uses, which plain-HTTP tests never exercise."""

import base64
import hashlib
from collections.abc import AsyncIterator, Iterator

import pytest

from imagedock.clients import open_deps
from simulator.local_s3 import LocalS3, local_s3
from tests.support.stack import s3_settings
from tests.support.storage import read_object
from worker.landing.errors import PermanentError, TransientError
from worker.landing.storage import Blob, ObjectStore
from worker.settings import load_settings

BUCKET = "tls"
BODY = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4000


@pytest.fixture(scope="module")
def tls_s3() -> Iterator[LocalS3]:
    with local_s3(BUCKET, https=True) as server:
        yield server


def blob(body: bytes, *, digest_of: bytes | None = None) -> Blob:
    """`body`, described by the SHA-256 of `digest_of` (by default, its own)."""
    digest = hashlib.sha256(body if digest_of is None else digest_of).hexdigest()
    return Blob(body, digest, "image/png", {"sha256": digest})


@pytest.fixture
def scheme() -> str:
    return "https"


@pytest.fixture
async def store(
    tls_s3: LocalS3, redis_url: str, mode: str, scheme: str
) -> AsyncIterator[ObjectStore]:
    """The S3 store `open_deps` makes for the TLS endpoint (or, `scheme` "http", the same
    server's plain one), in checksum `mode`."""
    settings = load_settings(
        redis_url=redis_url,
        **s3_settings(
            tls_s3,
            s3_bucket=BUCKET,
            s3_endpoint_url=tls_s3.https_url if scheme == "https" else tls_s3.endpoint_url,
            s3_ca_bundle=str(tls_s3.ca_bundle),
            s3_checksum_mode=mode,
        ),
    )
    async with open_deps(settings) as deps:
        yield deps.store


@pytest.mark.parametrize("mode", ["when_supported", "when_required"])
async def test_writes_over_tls_verify_and_read_back(store: ObjectStore, mode: str) -> None:
    """Both checksum modes store the exact bytes over HTTPS; a repeated write is a no-op."""
    await store.put_once(f"{mode}/1.png", blob(BODY))
    await store.put_once(f"{mode}/1.png", blob(BODY))
    assert await read_object(store, f"{mode}/1.png") == BODY
    assert (await store.head(f"{mode}/1.png"))["sha256"] == hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize("mode", ["when_supported"])
async def test_a_wrong_checksum_is_refused(store: ObjectStore, mode: str) -> None:
    """Bytes that do not match their declared digest never become an object. (In the
    `when_required` mode the Content-MD5 is computed from the very bytes sent: it guards the
    way to S3; the next test sees it sent.)"""
    with pytest.raises(TransientError, match="to PutObject"):
        await store.put_once(f"{mode}/bad.png", blob(BODY, digest_of=b"something else"))
    assert await store.head(f"{mode}/bad.png") == {}


@pytest.mark.parametrize("mode", ["when_required"])
async def test_the_compatible_mode_sends_the_bodys_md5(store: ObjectStore, mode: str) -> None:
    """For stores that take no checksum trailer, each PUT carries the MD5 of its body."""
    sent: list[bytes | None] = []
    store.client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: sent.append(request.headers.get("Content-MD5")),
    )
    await store.put_once(f"{mode}/md5.png", blob(BODY))
    assert sent == [base64.b64encode(hashlib.md5(BODY, usedforsecurity=False).digest())]


@pytest.mark.parametrize("scheme", ["http"])
@pytest.mark.parametrize("mode", ["when_supported", "when_required"])
async def test_the_body_is_hashed_once_and_still_verified(store: ObjectStore, mode: str) -> None:
    """Even over plain HTTP, boto3 does not hash the body again to sign it: the signed digest
    header (the download's SHA-256, or the MD5 in the compatible mode) is what S3 checks, and
    bytes that do not match it are refused."""
    sent: list[bytes | None] = []
    store.client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: sent.append(request.headers.get("X-Amz-Content-SHA256")),
    )
    await store.put_once(f"{mode}/once.png", blob(BODY))
    assert sent == [b"UNSIGNED-PAYLOAD"]
    assert await read_object(store, f"{mode}/once.png") == BODY
    if mode == "when_supported":
        with pytest.raises(TransientError, match="to PutObject"):
            await store.put_once(f"{mode}/bad.png", blob(BODY, digest_of=b"something else"))
        assert await store.head(f"{mode}/bad.png") == {}


@pytest.mark.parametrize("mode", ["when_supported"])
async def test_other_content_under_the_same_key_is_a_conflict(store: ObjectStore) -> None:
    """A second, different write to a job's key is refused, not silently overwritten."""
    await store.put_once("conflict/1.png", blob(BODY))
    with pytest.raises(PermanentError, match="already holds other content"):
        await store.put_once("conflict/1.png", blob(BODY[:-1] + b"!"))
    assert await read_object(store, "conflict/1.png") == BODY


@pytest.mark.parametrize("mode", ["when_supported"])
async def test_a_refusal_from_s3_is_permanent(tls_s3: LocalS3, redis_url: str, mode: str) -> None:
    """A 4xx that no retry can change (here a wrong secret key) fails the write for good."""
    settings = load_settings(
        redis_url=redis_url,
        **s3_settings(
            tls_s3,
            s3_bucket=BUCKET,
            s3_secret_access_key="not-the-secret",
            s3_endpoint_url=tls_s3.https_url,
            s3_ca_bundle=str(tls_s3.ca_bundle),
            s3_checksum_mode=mode,
        ),
    )
    async with open_deps(settings) as deps:
        with pytest.raises(PermanentError, match=r"SignatureDoesNotMatch \(403\) to PutObject"):
            await deps.store.put_once("x/1.png", blob(BODY))
