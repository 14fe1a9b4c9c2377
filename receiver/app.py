"""The receiver: imagedock's API, Apiframe's webhook endpoint and a health check, routed as the
table in `receiver/routes.py` lists them."""

from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from receiver.auth import BearerToken
from receiver.failures import HANDLERS, bad_query, internal_error
from receiver.headers import SecurityHeaders
from receiver.limits import RequestLimits
from receiver.queries import BadQuery, without_query
from receiver.rejections import Rejections
from receiver.routes import FILES, OPERATIONS, Operation
from receiver.state import lifespan_for
from receiver.v2.app import create_v2_app
from worker.deps import DepsOpener
from worker.settings import Settings


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
        # Apiframe's own API beside imagedock's: its document is Apiframe's (see `receiver.v2`).
        routes=[*routes_of(OPERATIONS), Mount("/v2", create_v2_app())],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(RequestLimits),
            Middleware(BearerToken, token=settings.token),
        ],
        lifespan=lifespan_for(settings, open_deps),
        exception_handlers={**HANDLERS, BadQuery: bad_query, Exception: internal_error},
    )
    app.state.rejections = Rejections()
    return app
