"""Bearer-token access to imagedock's own API."""

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse

from worker.settings import Settings


def refuse_unless_authorized(request: Request) -> JSONResponse | None:
    """None when the request carries `Bearer <IMAGEDOCK_API_TOKEN>`, else the 401 to answer."""
    settings: Settings = request.state.settings
    expected = settings.api_token.get_secret_value() if settings.api_token else ""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if expected and scheme.lower() == "bearer" and hmac.compare_digest(given, expected):
        return None
    return JSONResponse(
        {"error": "missing or wrong bearer token"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="imagedock"'},
    )
