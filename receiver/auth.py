"""Bearer-token access to imagedock's own API, as ASGI middleware; the route table says which
paths are served without the token."""

import hmac

from pydantic import SecretStr
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.responses import error
from receiver.routes import FILES, OPERATIONS

# The route table says which operations need no token, and why. Static files are open below the
# path they are mounted at; every other open path is open exactly as written.
OPEN = [operation for operation in OPERATIONS if not operation.token]
OPEN_PATHS = frozenset(op.path for op in OPEN if not isinstance(op.handler, StaticFiles))
OPEN_PREFIXES = tuple(
    op.path.removesuffix(FILES) + "/" for op in OPEN if isinstance(op.handler, StaticFiles)
)


class BearerToken:
    """Answers 401 unless the request carries `Authorization: Bearer <IMAGEDOCK_API_TOKEN>`."""

    def __init__(self, app: ASGIApp, token: SecretStr) -> None:
        self.app = app
        self.expected = f"Bearer {token.get_secret_value()}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_open(scope["path"]):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                refusal = error(
                    401,
                    "missing or wrong bearer token",
                    headers={"WWW-Authenticate": 'Bearer realm="imagedock"'},
                )
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


# Apiframe's own API takes its callers' keys instead (`receiver.v2.access`).
CALLERS = "/v2/"


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith((*OPEN_PREFIXES, CALLERS))
