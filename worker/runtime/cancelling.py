"""Cancelling tasks so that they end.

On Python 3.11 a cancellation can be lost: `asyncio.wait_for`, through which redis-py sends every
command once a socket timeout is set, returns its result instead of raising when the cancellation
lands in the instant the awaited write completes (3.12 fixed it). A task that must end is
therefore cancelled again for as long as it runs.
"""

import asyncio
from collections.abc import Iterable
from typing import Any

AGAIN_AFTER = 0.1  # seconds a task has to end before it is cancelled again


async def cancel_until_done(tasks: Iterable[asyncio.Future[Any]]) -> None:
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=AGAIN_AFTER)
