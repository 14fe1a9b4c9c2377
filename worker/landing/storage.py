"""S3 writes: create-only, checksummed by S3 itself, through the process's one boto3 client.

boto3 blocks, so every call runs on a dedicated thread pool sized with the client's connection
pool (both made by `imagedock.clients.open_deps`); calling it from a coroutine directly would
stall every other job on the worker.
"""

import asyncio
import base64
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from worker.landing.errors import PermanentError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CACHE_CONTROL = "private, max-age=31536000, immutable"  # a job's keys never change content
# Answers the callers read themselves.
EXPECTED_CODES = {"PreconditionFailed", "412", "404", "NoSuchKey", "NotFound", "NoSuchUpload"}
# 4xx answers that pass with another try: throttling, a write that raced another, a clock
# briefly skewed, temporary credentials being renewed, bytes that failed their checksum in
# transit. Every other 4xx (AccessDenied, NoSuchBucket, InvalidArgument) is permanent: the job
# fails with S3's word for a person to act on, instead of retrying for hours.
TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "RequestLimitExceeded",
    "ConditionalRequestConflict",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "BadDigest",
    "InvalidDigest",
    "XAmzContentSHA256Mismatch",
    "ExpiredToken",
    "TokenRefreshRequired",
    "RequestExpired",
}
METADATA_BYTES = 1800  # S3 allows 2 KB of user metadata, names included
SAFE_IN_METADATA = "/:?&=#@+,;%"


@dataclass(frozen=True)
class Blob:
    """What to write in one PUT: its bytes, their SHA-256, and how to describe them."""

    body: bytes
    sha256: str
    content_type: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class Stat:
    """An object's user metadata and size."""

    metadata: dict[str, str]
    size: int


class ObjectStore:
    def __init__(
        self,
        client: "S3Client",
        threads: ThreadPoolExecutor,
        *,
        bucket: str,
        prefix: str,
        checksum_mode: str = "when_supported",
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self._checksum_mode = checksum_mode
        self._threads = threads

    def key(self, job_id: str, name: str) -> str:
        return f"{self.prefix}{job_id}/{name}"

    async def put_once(self, key: str, blob: Blob) -> None:
        """Write `key` unless it exists. An existing object with the same SHA-256 is this write,
        retried: success. One with another digest is a conflict and a permanent error."""
        try:
            await self._call(self._put, key, blob)
        except ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "412"):
                raise
            stored = await self.head(key)
            if stored.get("sha256") != blob.sha256:
                raise PermanentError(
                    f"s3://{self.bucket}/{key} already holds other content "
                    f"(sha256 {stored.get('sha256')}, not {blob.sha256})"
                ) from exc

    async def put(self, key: str, blob: Blob) -> None:
        """Write `key` whatever it holds: for a document that may be written again, more
        complete, until something names it (a finished job's timeline)."""
        await self._call(self._put, key, blob, once=False)

    async def read(self, key: str) -> bytes | None:
        """The object's bytes, or None if it does not exist."""

        def get() -> bytes:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            return bytes(answer["Body"].read())

        try:
            found: bytes = await self._call(get)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return found

    async def head(self, key: str) -> dict[str, str]:
        """The object's user metadata, or {} if it does not exist."""
        found = await self.stat(key)
        return found.metadata if found else {}

    async def stat(self, key: str) -> Stat | None:
        """The object's metadata and size, or None if it does not exist."""
        try:
            answer = await self._call(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return Stat(answer.get("Metadata", {}), int(answer.get("ContentLength", 0)))

    # A multipart upload, a part at a time (see `landing.upload`).

    async def create_upload(self, key: str, content_type: str, metadata: dict[str, str]) -> str:
        answer = await self._call(
            self.client.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            ContentType=content_type,
            CacheControl=CACHE_CONTROL,
            Metadata=ascii_metadata(metadata),
        )
        return str(answer["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        """Send part `number`; returns its ETag. Checked by S3 with the checksum mode's digest."""
        extra: dict[str, Any] = {}
        if self._checksum_mode != "when_supported":  # else boto3 sends a CRC32 of its own
            extra["ContentMD5"] = md5_of(body)
        answer = await self._call(
            self.client.upload_part,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            **extra,
        )
        return str(answer["ETag"])

    async def complete_upload(self, key: str, upload_id: str, etags: list[str]) -> None:
        """Make the object of the parts sent, unless `key` exists (S3 answers 412)."""
        parts = [{"ETag": etag, "PartNumber": n} for n, etag in enumerate(etags, start=1)]
        await self._call(
            self.client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort the upload; one S3 no longer knows (completed, or aborted before) is done."""
        try:
            await self._call(
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )
        except ClientError as exc:
            if error_code(exc) not in ("NoSuchUpload", "404"):
                raise

    async def check_bucket(self) -> None:
        """Raise TransientError, naming S3's answer, unless the bucket can be reached."""
        try:
            await self._call(self.client.head_bucket, Bucket=self.bucket)
        except ClientError as exc:  # HeadBucket's 404 comes back as an expected code
            raise TransientError(f"S3 answered {error_code(exc)} to HeadBucket") from exc

    async def presign(self, keys: list[str], seconds: int) -> dict[str, str]:
        """Short-lived GET URLs (SigV4, signed locally: nothing is sent) for `keys`, by key.
        They are bearer credentials: handed to the caller, never logged."""

        def sign_all() -> dict[str, str]:
            return {
                key: self.client.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=seconds
                )
                for key in keys
            }

        return await self._call(sign_all) if keys else {}

    def _put(self, key: str, blob: Blob, *, once: bool = True) -> None:
        # Create-only, and then immutable for any cache; else a plain overwrite.
        extra: dict[str, Any] = {"IfNoneMatch": "*", "CacheControl": CACHE_CONTROL} if once else {}
        if self._checksum_mode == "when_supported":
            extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(blob.sha256)).decode()
        else:  # stores that reject aws-chunked trailers still verify Content-MD5
            extra["ContentMD5"] = md5_of(blob.body)
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=blob.body,
            ContentLength=len(blob.body),
            ContentType=blob.content_type,
            Metadata=ascii_metadata(blob.metadata),
            **extra,
        )

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._threads, partial(function, *args, **kwargs)
            )
        except ClientError as exc:
            code, status = error_code(exc), status_of(exc)
            if code in EXPECTED_CODES:
                raise
            message = f"S3 answered {code} ({status}) to {exc.operation_name}"
            if 400 <= status < 500 and status != 429 and code not in TRANSIENT_CODES:
                raise PermanentError(message) from exc
            raise TransientError(message) from exc
        except ParamValidationError as exc:  # refused before it was sent: it always will be
            raise PermanentError(f"S3 request refused by boto3: {exc}") from exc
        except BotoCoreError as exc:  # connection and read timeouts, endpoint errors
            raise TransientError(f"S3 could not be reached: {exc.__class__.__name__}") from exc


def ascii_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """User metadata S3 accepts: ASCII (anything else percent-encoded), under its 2 KB limit."""
    encoded = {name: quote(value, safe=SAFE_IN_METADATA) for name, value in metadata.items()}
    while sum(len(k) + len(v) for k, v in encoded.items()) > METADATA_BYTES:
        longest = max(encoded, key=lambda name: len(encoded[name]))
        encoded[longest] = encoded[longest][: len(encoded[longest]) // 2]
    return encoded


def json_blob(document: Any, metadata: dict[str, str]) -> Blob:
    body = json.dumps(document, indent=2, sort_keys=True).encode()
    sha256 = hashlib.sha256(body).hexdigest()
    return Blob(body, sha256, "application/json", {**metadata, "sha256": sha256})


def md5_of(body: bytes) -> str:
    """Content-MD5, only where the checksum mode needs it (one digest per byte otherwise)."""
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def status_of(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
