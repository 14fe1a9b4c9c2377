"""How many of one costly kind of request a process serves at once.

A job list can pass over thousands of records and presign hundreds of URLs; a handful at once
is all one process should give them, so webhooks and probes never queue behind a crowd of
lists. A request waits a moment for a place, then is refused with 429 and `Retry-After`.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Busy(Exception):
    """Every place was taken for as long as a request may wait."""


class Admission:
    def __init__(self, most: int, wait: float) -> None:
        self.most = most
        self.wait = wait
        self._places = asyncio.Semaphore(most)

    @asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        """Hold a place while the block runs; `Busy` if none came free within `wait`."""
        try:
            async with asyncio.timeout(self.wait):
                await self._places.acquire()
        except TimeoutError:
            raise Busy(f"{self.most} of these are being served; retry shortly") from None
        try:
            yield
        finally:
            self._places.release()
