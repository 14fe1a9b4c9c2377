"""How the receiver answers what a handler raises, in the API's JSON error shape."""

from typing import Any

from redis.exceptions import RedisError, ResponseError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from receiver.headers import HEADERS
from receiver.queries import BadQuery
from receiver.responses import error
from worker.landing.errors import TransientError


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, a method it does not take) in the API's JSON
    shape, keeping the headers they carry (405's Allow)."""
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, headers=exc.headers)


async def redis_down(request: Request, exc: Exception) -> Response:
    """Redis lost mid-request: nothing was decided, so the caller may retry (Apiframe does)."""
    return error(503, f"Redis does not answer ({exc.__class__.__name__}); retry shortly",
                 headers={"Retry-After": "5"})  # fmt: skip


async def s3_down(request: Request, exc: Exception) -> Response:
    """S3 unreachable while a compacted job's timeline was read: nothing changed, retry."""
    return error(503, f"{exc}; retry shortly", headers={"Retry-After": "5"})


async def redis_refused(request: Request, exc: Exception) -> Response:
    """Redis answered, and refused a command: a fault of imagedock's, not an outage to wait out."""
    return error(500, f"Redis refused a command ({exc.__class__.__name__})")


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug: Starlette answers it outside every middleware, so the headers are set here."""
    return error(500, "internal error", headers=HEADERS)


async def bad_query(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadQuery)
    return error(400, "invalid query", details=exc.details)


# What the mounted `/v2` app answers the same way; a bug (`internal_error`) is the app's own.
HANDLERS: dict[Any, ExceptionHandler] = {
    HTTPException: http_error,
    RedisError: redis_down,
    TransientError: s3_down,
    ResponseError: redis_refused,
}
