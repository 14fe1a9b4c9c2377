"""The receiver: imagedock's API, Apiframe's webhook endpoint and a health check, routed as the
table in `receiver/routes.py` lists them."""

from collections.abc import Iterable

from redis.exceptions import RedisError, ResponseError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from receiver.auth import BearerToken
from receiver.headers import HEADERS, SecurityHeaders
from receiver.limits import RequestLimits
from receiver.queries import BadQuery, without_query
from receiver.rejections import Rejections
from receiver.responses import error
from receiver.routes import FILES, OPERATIONS, Operation
from receiver.state import lifespan_for
from worker.deps import DepsOpener
from worker.settings import Settings


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, a method it does not take) in the API's JSON
    shape, keeping the headers they carry (405's Allow)."""
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, headers=exc.headers)


async def redis_down(request: Request, exc: Exception) -> Response:
    """Redis lost mid-request: nothing was decided, so the caller may retry (Apiframe does)."""
    return error(503, f"Redis does not answer ({exc.__class__.__name__}); retry shortly",
                 headers={"Retry-After": "5"})  # fmt: skip


async def redis_refused(request: Request, exc: Exception) -> Response:
    """Redis answered, and refused a command: a fault of imagedock's, not an outage to wait out."""
    return error(500, f"Redis refused a command ({exc.__class__.__name__})")


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug: Starlette answers it outside every middleware, so the headers are set here."""
    return error(500, "internal error", headers=HEADERS)


async def bad_query(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadQuery)
    return error(400, "invalid query", details=exc.details)


def routes_of(operations: Iterable[Operation]) -> list[BaseRoute]:
    """Starlette's routes in the table's order: one `Route` per path, taking every method the
    table lists for it with the one handler they share, and a `Mount` for static files."""
    by_path: dict[str, list[Operation]] = {}
    for operation in operations:
        by_path.setdefault(operation.path, []).append(operation)
    routes: list[BaseRoute] = []
    for path, (first, *others) in by_path.items():
        assert all(other.handler is first.handler for other in others), path
        if isinstance(first.handler, StaticFiles):
            mount = path.removesuffix(FILES)
            routes.append(Mount(mount, first.handler, name=mount.strip("/")))
        else:
            methods = [first.method, *(other.method for other in others)]
            # imagedock's own API refuses what it does not read; the open routes (Apiframe's
            # callback, probes, the page) are left as their callers send them.
            bare = [o.method for o in (first, *others) if o.token and o.query is None]
            handler = without_query(first.handler, bare) if bare else first.handler
            routes.append(Route(path, handler, methods=methods))
    return routes


def create_app(settings: Settings, open_deps: DepsOpener) -> Starlette:
    """The receiver; its lifespan opens the process's clients with `open_deps`."""
    settings.require("apiframe_key", "api_token", "public_url")
    app = Starlette(
        routes=routes_of(OPERATIONS),
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(RequestLimits),
            Middleware(BearerToken, token=settings.token),
        ],
        lifespan=lifespan_for(settings, open_deps),
        exception_handlers={
            HTTPException: http_error,
            BadQuery: bad_query,
            RedisError: redis_down,
            ResponseError: redis_refused,
            Exception: internal_error,
        },
    )
    app.state.rejections = Rejections()
    return app
