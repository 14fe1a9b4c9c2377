"""arq workers built to fail, for what the supervisor does with a worker that dies."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from arq import func
from arq.connections import ArqRedis

from worker.runtime.arq_worker import StoppableWorker
from worker.runtime.runner import Build


@asynccontextmanager
async def failing_worker(
    redis_url: str, fault: Callable[[], None], *, hang: bool = False
) -> AsyncIterator[Build]:
    """Builds arq workers that meet `fault` and then fail with an error Redis has no part in,
    or, with `hang`, wait there for good."""
    pools: list[ArqRedis] = []

    async def startup(ctx: dict[str, Any]) -> None:
        fault()
        if hang:
            await asyncio.Event().wait()
        raise RuntimeError("a bug")

    async def idle(ctx: dict[str, Any]) -> None:
        """arq wants a function to run."""

    def build() -> StoppableWorker:
        pool = ArqRedis.from_url(redis_url, socket_connect_timeout=1)
        pools.append(pool)
        return StoppableWorker(
            functions=[func(idle, name="idle")],
            redis_pool=pool,
            on_startup=startup,
            handle_signals=False,
        )

    try:
        yield build
    finally:
        for pool in pools:
            await pool.aclose()
