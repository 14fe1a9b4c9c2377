"""The probes an orchestrator asks: `/healthz` (alive) and `/readyz` (ready for traffic)."""

import asyncio

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse

from receiver.responses import error
from receiver.schemas import Health
from receiver.state import deps_of

READY_TIMEOUT = 2.0


async def healthz(request: Request) -> JSONResponse:
    """The process is up: a liveness probe, which must not depend on Redis (a Redis outage
    would otherwise restart every receiver at once)."""
    return JSONResponse(Health(ok=True).body())


async def readyz(request: Request) -> JSONResponse:
    """Ready to take traffic: Redis answers within `READY_TIMEOUT` seconds."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await deps_of(request).redis.ping()
    except (TimeoutError, RedisError, OSError) as exc:
        return error(503, f"Redis does not answer: {exc.__class__.__name__}")
    return JSONResponse(Health(ok=True).body())
