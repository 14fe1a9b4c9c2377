"""`GET /log` as Server-Sent Events: each job-log entry once, in order, its stream id as the
event's `id`, so a client that reconnects with `Last-Event-ID` resumes without loss or repeat.
Entries come from the process's one reader (`live_log`); a comment every few seconds keeps
proxies from closing an idle stream."""

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from receiver.live_log import Full
from receiver.responses import error
from receiver.state import fanout_of
from worker.ledger.log import is_log_id

HEARTBEAT = 15.0
RETRY_AFTER = "5"  # seconds, for a client refused because every stream is taken


def wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


async def log_stream(request: Request) -> Response:
    """Entries after `Last-Event-ID` (or `?after=`), else from now on."""
    start = request.headers.get("last-event-id") or request.query_params.get("after")
    if start is not None and not is_log_id(start):
        return error(400, "Last-Event-ID (or after) must be a log entry id, like 1700000000000-0")
    if request.method == "HEAD":  # headers only: no stream to hold a place for
        return Response(media_type="text/event-stream")
    try:
        events = fanout_of(request).stream(start)
    except Full as exc:
        return error(503, str(exc), headers={"Retry-After": RETRY_AFTER})
    return EventSourceResponse(events, ping=HEARTBEAT)
