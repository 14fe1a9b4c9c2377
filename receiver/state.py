"""What the receiver's lifespan opens once and every handler reads from `request.state`."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypedDict

from arq.connections import ArqRedis
from starlette.applications import Starlette

from worker.apiframe import ApiframeClient
from worker.ledger import Ledger
from worker.queue import connect
from worker.settings import Settings
from worker.submission import Submitter


class State(TypedDict):
    settings: Settings
    redis: ArqRedis
    ledger: Ledger
    submitter: Submitter


def lifespan_for(settings: Settings) -> Callable[[Starlette], AbstractAsyncContextManager[State]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        redis = await connect(settings.redis_url)
        try:
            async with ApiframeClient(settings.apiframe_url, settings.api_keys[0]) as apiframe:
                submitter = Submitter.for_settings(redis, apiframe, settings)
                yield {
                    "settings": settings,
                    "redis": redis,
                    "ledger": submitter.ledger,
                    "submitter": submitter,
                }
        finally:
            await redis.aclose()

    return lifespan
