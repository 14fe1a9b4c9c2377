"""Waiting on conditions with a deadline, never on the clock alone, and on work run beside a
block."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager


async def eventually(
    condition: Callable[[], Awaitable[bool]], what: str, deadline: float = 60.0
) -> None:
    end = time.monotonic() + deadline
    while not await condition():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


def wait_for(condition: object, what: str, deadline: float = 60.0) -> None:
    assert callable(condition)
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.05)


@asynccontextmanager
async def background(
    work: Awaitable[None], *, drain: float = 0.0
) -> AsyncIterator["asyncio.Task[None]"]:
    """Run `work` beside the block. When the block ends, let it finish for up to `drain`
    seconds (an arq worker does not always heed a cancel), then cancel what is left."""
    task = asyncio.ensure_future(work)
    try:
        yield task
    finally:
        if drain:
            await asyncio.wait([task], timeout=drain)
        task.cancel()
        await asyncio.wait([task], timeout=10)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the block itself awaits what it wants to see
