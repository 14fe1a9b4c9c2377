"""A process's Redis connections: a task cancelled while it talks to Redis ends, whatever
instant of a command the cancellation lands in, and a process opens no more than its setting."""

import asyncio

import redis.asyncio as redis

from imagedock.clients import open_deps
from worker.deps import Deps
from worker.runtime.cancelling import cancel_until_done
from worker.settings import load_settings


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


async def test_a_process_opens_at_most_its_share_of_connections(redis_url: str) -> None:
    """Twenty commands at once, each holding its connection a while, through a pool of four:
    all are answered, and no more than four connections are ever open."""
    watcher = redis.Redis.from_url(redis_url)
    settings = load_settings(redis_url=redis_url, redis_max_connections=4)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, int((await watcher.info("clients"))["connected_clients"]))
            await asyncio.sleep(0.01)

    try:
        async with open_deps(settings) as deps:
            before = int((await watcher.info("clients"))["connected_clients"])
            watching = asyncio.create_task(watch())
            held = [hold(deps.redis, f"imagedock:test:empty:{n}") for n in range(20)]
            assert await asyncio.gather(*held) == [None] * 20
            await cancel_until_done([watching])
        assert peak - before <= 4 - 1  # the one opened at start counts in `before`
    finally:
        await watcher.aclose()


async def hold(client: redis.Redis, key: str) -> object:
    """A command that keeps its connection a fifth of a second: a BLPOP on an empty list."""
    answer: object = await client.execute_command("BLPOP", key, 0.2)  # type: ignore[no-untyped-call]
    return answer
