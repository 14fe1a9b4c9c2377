"""A download's destination in S3, written as the bytes arrive.

A file of up to one part (`PART`) is held in memory and written with one create-only PUT that
carries its SHA-256. A larger one becomes a multipart upload: each part is sent as soon as it
fills, while the next one downloads, so a 500 MB video costs two parts of memory and no disk.
The upload is created only if the object is absent (a landing run again finds it and sends
nothing), completed create-only, and aborted on any failure; the bucket's lifecycle rule
(`deploy/s3-lifecycle.json`) removes whatever an abort could not.
"""

import asyncio
from dataclasses import dataclass, field

import structlog
from botocore.exceptions import ClientError

from worker.landing.download import Download
from worker.landing.errors import PermanentError
from worker.landing.storage import Blob, ObjectStore, ascii_metadata, error_code

MiB = 1024 * 1024
PART = 8 * MiB  # parts are 8 MiB and up (by at most one chunk); S3 allows 5 MiB to 5 GiB
log = structlog.get_logger("upload")


@dataclass
class ObjectWriter:
    """Writes one file of a job, named `name` (its extension comes from its first bytes)."""

    store: ObjectStore
    job_id: str
    name: str
    metadata: dict[str, str]
    key: str = ""
    content_type: str = ""
    present: bool = False  # the object was landed before: the bytes are only counted
    upload_id: str | None = None
    etags: list[str] = field(default_factory=list)
    buffer: list[bytes] = field(default_factory=list)  # the part being filled, joined once
    held: int = 0  # its bytes
    sending: asyncio.Task[str] | None = None

    async def begin(self, content_type: str, extension: str, size: int | None) -> None:
        self.key = self.store.key(self.job_id, f"{self.name}.{extension}")
        self.content_type = content_type
        if size is not None and size > PART:  # a multipart upload is created only if absent
            found = await self.store.stat(self.key)
            self.present = found is not None and self.same(found.metadata, found.size, size)

    async def write(self, chunk: bytes) -> None:
        if self.present:
            return
        self.buffer.append(chunk)
        self.held += len(chunk)
        if self.held >= PART:
            await self._send_part()

    async def finish(self, download: Download) -> None:
        """Make the object: one PUT, or the multipart upload's last part and completion."""
        if self.present:
            return
        if self.upload_id is None:
            metadata = {**self.metadata, "sha256": download.sha256}
            blob = Blob(b"".join(self.buffer), download.sha256, self.content_type, metadata)
            await self.store.put_once(self.key, blob)
            return
        if self.buffer:
            await self._send_part()
        await self._sent()
        try:
            await self.store.complete_upload(self.key, self.upload_id, self.etags)
        except ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "412"):
                raise
            await self.abort()  # S3 may have completed it already: a lost answer, retried
            found = await self.store.stat(self.key)
            if found is None or not self.same(found.metadata, found.size, download.size):
                raise PermanentError(
                    f"s3://{self.store.bucket}/{self.key} already holds another file"
                ) from exc
        self.upload_id = None

    async def abort(self) -> None:
        """Give up: no part left behind. Safe to call at any point, more than once, and it
        raises nothing: what failed first is what the caller reports (an upload an abort
        could not end is the bucket's lifecycle rule's)."""
        if self.sending is not None:
            self.sending.cancel()
            await asyncio.gather(self.sending, return_exceptions=True)
            self.sending = None
        upload, self.upload_id = self.upload_id, None
        if upload is not None:
            aborting = asyncio.ensure_future(self.store.abort_upload(self.key, upload))
            try:
                await asyncio.shield(aborting)
            except Exception as exc:
                log.warning("upload.abort_failed", key=self.key, error=repr(exc))

    def same(self, metadata: dict[str, str], size: int, expected: int) -> bool:
        """Whether an object already there is this file: its source and its size."""
        source = ascii_metadata(self.metadata).get("source-url")
        return metadata.get("source-url") == source and size == expected

    async def _send_part(self) -> None:
        if self.upload_id is None:
            self.upload_id = await self.store.create_upload(
                self.key, self.content_type, self.metadata
            )
        await self._sent()  # at most one part in flight: memory stays two parts
        part, self.buffer, self.held = b"".join(self.buffer), [], 0
        number = len(self.etags) + 1
        self.sending = asyncio.create_task(
            self.store.upload_part(self.key, self.upload_id, number, part)
        )

    async def _sent(self) -> None:
        if self.sending is not None:
            self.etags.append(await self.sending)
            self.sending = None
