"""`cancel_until_done` ends a task that lost a cancellation, as a library can make it do."""

import asyncio

from worker.runtime.cancelling import cancel_until_done


async def test_a_task_that_loses_a_cancellation_is_cancelled_again_until_it_ends() -> None:
    lost = 0

    async def loses_the_first_two() -> None:
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                lost += 1
                if lost > 2:
                    raise

    task = asyncio.create_task(loses_the_first_two())
    await asyncio.sleep(0)
    try:
        await cancel_until_done([task])
        assert task.cancelled()
        assert lost == 3
    finally:
        while not task.done():  # so that a broken helper fails this test instead of hanging it
            task.cancel()
            await asyncio.sleep(0)
