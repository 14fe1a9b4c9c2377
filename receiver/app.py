"""The receiver: imagedock's API, Apiframe's webhook endpoint and a health check."""

import asyncio

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver import dashboard, jobs, operations
from receiver.auth import BearerToken
from receiver.limits import RequestLimits
from receiver.metrics import metrics_page, stats
from receiver.openapi import openapi
from receiver.queries import BadQuery
from receiver.rejections import Rejections
from receiver.responses import error
from receiver.schemas import Health
from receiver.state import deps_of, lifespan_for
from receiver.webhooks import apiframe_webhook
from worker.deps import DepsOpener
from worker.settings import Settings


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


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, a method it does not take) in the API's JSON
    shape, keeping the headers they carry (405's Allow)."""
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, headers=exc.headers)


async def redis_down(request: Request, exc: Exception) -> Response:
    """Redis lost mid-request: nothing was decided, so the caller may retry (Apiframe does)."""
    return error(503, f"Redis does not answer ({exc.__class__.__name__}); retry shortly",
                 headers={"Retry-After": "5"})  # fmt: skip


async def bad_query(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadQuery)
    return error(400, "invalid query", details=exc.details)


READY_TIMEOUT = 2.0


def create_app(settings: Settings, open_deps: DepsOpener) -> Starlette:
    """The receiver; its lifespan opens the process's clients with `open_deps`."""
    settings.require("apiframe_key", "api_token", "public_url")
    app = Starlette(
        routes=[
            # Routes are tried in order: Apiframe's callbacks, the busiest, first.
            Route("/webhooks/apiframe", apiframe_webhook, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_page),
            Route("/stats", stats),
            Route("/openapi.json", openapi),
            Route("/jobs", jobs.jobs, methods=["GET", "POST"]),
            Route("/jobs/track", operations.track, methods=["POST"]),
            Route("/jobs/{job_id}", jobs.get_job),
            Route("/jobs/{job_id}/log", jobs.job_log),
            Route("/jobs/{job_id}/replay", operations.replay, methods=["POST"]),
            Route("/events/dead", operations.dead_letters),
            Route("/events/redrive", operations.redrive, methods=["POST"]),
            Route("/log", jobs.global_log),
            *dashboard.ROUTES,
        ],
        middleware=[Middleware(RequestLimits), Middleware(BearerToken, token=settings.token)],
        lifespan=lifespan_for(settings, open_deps),
        exception_handlers={
            HTTPException: http_error,
            BadQuery: bad_query,
            RedisError: redis_down,
        },
    )
    app.state.rejections = Rejections()
    return app
