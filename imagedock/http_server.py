"""How imagedock runs an ASGI app under uvicorn: the one set of server options, used by
`imagedock receiver`, `imagedock simulator` and the in-loop servers of the demo and tests."""

import uvicorn
from starlette.types import ASGIApp


def uvicorn_config(app: ASGIApp, **options: object) -> uvicorn.Config:
    # No websockets here; `log_config=None` leaves logging to structlog's set-up.
    return uvicorn.Config(app, ws="none", log_config=None, access_log=False, **options)  # type: ignore[arg-type]
