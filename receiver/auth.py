"""Bearer-token access to imagedock's own API, as ASGI middleware."""

import hmac

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.responses import error

# Apiframe cannot send a token, health probes and scrapers should not need one, and the
# dashboard's page and assets hold no data (the page asks for the token itself).
OPEN_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/webhooks/apiframe"}
)
OPEN_PREFIXES = ("/static/",)


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


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
