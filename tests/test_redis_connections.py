"""A task cancelled while it talks to Redis ends, whatever instant of a command the
cancellation lands in."""

import asyncio

from worker.deps import Deps
from worker.runtime.cancelling import cancel_until_done


async def test_a_task_cancelled_at_any_instant_of_a_command_ends(deps: Deps) -> None:
    async def busy() -> None:
        while True:
            await deps.redis.set("imagedock:test:busy", "1")

    ran_on = []
    for turns in range(300):
        task = asyncio.create_task(busy())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        _, running = await asyncio.wait([task], timeout=5)
        if running:  # the cancellation was lost: the task went on with its next command
            ran_on.append(turns)
            await cancel_until_done(running)
    assert not ran_on, f"cancelled after these many turns, it ran on: {ran_on}"
