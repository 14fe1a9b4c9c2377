"""S3 writes over TLS, where boto3 sends aws-chunked bodies with checksum trailers: the upload
path production uses, which plain-HTTP tests never exercise."""

import hashlib
from collections.abc import Iterator

import pytest

from receiver.local_s3 import LocalS3, local_s3
from worker.errors import PermanentError, TransientError
from worker.settings import load_settings
from worker.storage import Blob, ObjectStore

BUCKET = "tls"
BODY = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4000


@pytest.fixture(scope="module")
def tls_s3() -> Iterator[LocalS3]:
    with local_s3(BUCKET, https=True) as server, pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", server.access_key)
        env.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
        yield server


def blob(body: bytes, *, digests_of: bytes | None = None) -> Blob:
    """`body`, described by the digests of `digests_of` (by default, its own)."""
    described = body if digests_of is None else digests_of
    digest = hashlib.sha256(described).hexdigest()
    md5 = hashlib.md5(described, usedforsecurity=False).hexdigest()
    return Blob(body, len(body), digest, md5, "image/png", {"sha256": digest})


def store(server: LocalS3, mode: str) -> ObjectStore:
    return ObjectStore(
        load_settings(
            s3_bucket=BUCKET,
            s3_endpoint_url=server.https_url,
            s3_region="us-east-1",
            s3_addressing_style="path",
            s3_ca_bundle=str(server.ca_bundle),
            s3_checksum_mode=mode,
        )
    )


@pytest.mark.parametrize("mode", ["when_supported", "when_required"])
async def test_writes_over_tls_verify_and_read_back(tls_s3: LocalS3, mode: str) -> None:
    """Both checksum modes store the exact bytes over HTTPS; a repeated write is a no-op."""
    objects = store(tls_s3, mode)
    try:
        await objects.put_once(f"{mode}/1.png", blob(BODY))
        await objects.put_once(f"{mode}/1.png", blob(BODY))
        assert await objects.read(f"{mode}/1.png") == BODY
        assert (await objects.head(f"{mode}/1.png"))["sha256"] == hashlib.sha256(BODY).hexdigest()
    finally:
        objects.close()


@pytest.mark.parametrize("mode", ["when_supported", "when_required"])
async def test_a_wrong_checksum_is_refused(tls_s3: LocalS3, mode: str) -> None:
    """Bytes that do not match their declared digest never become an object."""
    objects = store(tls_s3, mode)
    try:
        with pytest.raises(TransientError, match="to PutObject"):
            await objects.put_once(f"{mode}/bad.png", blob(BODY, digests_of=b"something else"))
        assert await objects.head(f"{mode}/bad.png") == {}
    finally:
        objects.close()


async def test_other_content_under_the_same_key_is_a_conflict(tls_s3: LocalS3) -> None:
    """A second, different write to a job's key is refused, not silently overwritten."""
    objects = store(tls_s3, "when_supported")
    try:
        await objects.put_once("conflict/1.png", blob(BODY))
        with pytest.raises(PermanentError, match="already holds other content"):
            await objects.put_once("conflict/1.png", blob(BODY[:-1] + b"!"))
        assert await objects.read("conflict/1.png") == BODY
    finally:
        objects.close()
