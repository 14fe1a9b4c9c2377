"""The SHA-256 of a download, computed as it arrives without holding the event loop.

hashlib lets go of the GIL while it hashes a large buffer, so hashing a megabyte at a time on a
thread lets the loop read the next bytes (and the next part go to S3) meanwhile: a 300 MB video
costs its digest's CPU time, not its wall time. Batches are hashed strictly in order, one at a
time. A file smaller than one batch is hashed in the loop, in one call.
"""

import asyncio
import hashlib

BATCH = 1024 * 1024


class Digest:
    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._batch: list[bytes] = []
        self._held = 0  # bytes in the batch
        self._hashing: asyncio.Future[None] | None = None

    async def update(self, chunk: bytes) -> None:
        self._batch.append(chunk)
        self._held += len(chunk)
        if self._held >= BATCH:
            await self._hash_batch()

    async def hexdigest(self) -> str:
        if self._hashing is None:  # a small file: one call, no thread
            self._sha256.update(b"".join(self._batch))
            self._batch, self._held = [], 0
        elif self._batch:
            await self._hash_batch()
        if self._hashing is not None:
            await self._hashing
        return self._sha256.hexdigest()

    async def _hash_batch(self) -> None:
        if self._hashing is not None:
            await self._hashing  # in order: the one before first
        data = b"".join(self._batch)
        self._batch, self._held = [], 0
        self._hashing = asyncio.get_running_loop().run_in_executor(None, self._sha256.update, data)
