"""How imagedock runs an ASGI app under uvicorn: the one set of server options, used by
`imagedock receiver`, `imagedock simulator` and the in-loop servers of the demo and tests."""

import uvicorn
from starlette.types import ASGIApp

# A server facing the internet: idle connections closed after 5 s, at most this many
# connections and tasks at once (503 past it), and h11's cap on a request's head, were it chosen.
# A read deadline on bodies is the receiver's own; slow headers are a proxy's to cut (README).
PUBLIC = {
    "timeout_keep_alive": 5,
    "limit_concurrency": 1000,
    "h11_max_incomplete_event_size": 16384,
}


def uvicorn_config(app: ASGIApp | str, **options: object) -> uvicorn.Config:
    # No websockets here; `log_config=None` leaves logging to structlog's set-up.
    return uvicorn.Config(app, ws="none", log_config=None, access_log=False, **options)  # type: ignore[arg-type]
