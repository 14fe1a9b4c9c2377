"""Worker heartbeats: each worker process stamps the time into one sorted set every few
seconds, so `/metrics`, `imagedock check` and a probe can tell whether any worker (or the one on
this host) is alive without asking the process itself."""

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from worker.ledger.keys import WORKERS
from worker.runtime.cancelling import cancel_until_done

INTERVAL = 10.0
FRESH = 30.0  # a worker whose last beat is older than this is taken for dead
FORGET = 3600.0  # beats older than this are dropped, so departed workers do not pile up
log = structlog.get_logger("worker")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def beat(redis: Redis, member: str) -> None:
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(WORKERS, {member: now})
        pipe.zremrangebyscore(WORKERS, "-inf", now - FORGET)
        await pipe.execute()


@contextlib.asynccontextmanager
async def beating(redis: Redis, interval: float = INTERVAL) -> AsyncIterator[str]:
    """Beat every `interval` seconds while the block runs; the beat is withdrawn at the end."""
    member = worker_id()

    async def keep_beating() -> None:
        while True:
            try:
                await beat(redis, member)
            except RedisError as exc:  # the workers meet the same outage and say so
                log.warning("worker.heartbeat_failed", error=repr(exc))
            await asyncio.sleep(interval)

    task = asyncio.create_task(keep_beating())
    try:
        yield member
    finally:
        await cancel_until_done([task])
        with contextlib.suppress(RedisError, OSError):
            await redis.zrem(WORKERS, member)


async def last_beats(redis: Redis) -> dict[str, float]:
    """Every worker's last beat, by host:pid."""
    beats = await redis.zrange(WORKERS, 0, -1, withscores=True)
    return {(m.decode() if isinstance(m, bytes) else str(m)): score for m, score in beats}


def alive(beats: dict[str, float], now: float) -> list[str]:
    """The workers whose last beat is fresh."""
    return [member for member, at in beats.items() if now - at <= FRESH]
