"""Marks in Redis that expire: what anyone may ask for often (a confirmation with Apiframe, a
replay) done once an interval, and leases that let one caller at a time do something (a submit
to Apiframe) and lapse if it dies."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from worker.ledger.scripts import source


class Marks:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._release = redis.register_script(source("release"))

    async def once_within(self, key: str, seconds: float) -> float:
        """0 if nothing marked `key` in the last `seconds` (it is marked now), else the seconds
        until it may be again: what anyone may ask for often is done once an interval."""
        if await self.redis.set(key, 1, nx=True, px=max(1, round(seconds * 1000))):
            return 0.0
        left = int(await self.redis.pttl(key))
        return max(left, 1) / 1000

    @asynccontextmanager
    async def leased(self, key: str, seconds: float) -> AsyncIterator[bool]:
        """Hold `key` while the block runs (for `seconds` at most, should the holder die): True
        if this caller holds it, False if another does."""
        token = uuid.uuid4().hex
        held = bool(await self.redis.set(key, token, nx=True, px=round(seconds * 1000)))
        try:
            yield held
        finally:
            if held:
                await self._release(keys=[key], args=[token])
