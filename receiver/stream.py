"""`GET /log` as Server-Sent Events: each job-log entry once, in order, its stream id as the
event's `id`, so a client that reconnects with `Last-Event-ID` resumes without loss or repeat.
Entries arrive through a blocking XREAD; a comment every few seconds keeps proxies from closing
an idle stream."""

import json
from collections.abc import AsyncIterator

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from receiver.responses import error
from receiver.state import deps_of
from worker.ledger.ledger import Ledger
from worker.ledger.log import is_log_id

WAIT_MS = 5_000  # under the Redis client's 10 s socket timeout
HEARTBEAT = 15.0


def wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


async def log_stream(request: Request) -> Response:
    """Entries after `Last-Event-ID` (or `?after=`), else from now on."""
    start = request.headers.get("last-event-id") or request.query_params.get("after")
    if start is not None and not is_log_id(start):
        return error(400, "Last-Event-ID (or after) must be a log entry id, like 1700000000000-0")
    ledger = deps_of(request).ledger
    return EventSourceResponse(
        entries(ledger, start or await ledger.history.last_id()), ping=HEARTBEAT
    )


async def entries(ledger: Ledger, after: str) -> AsyncIterator[dict[str, str]]:
    while True:
        for entry in await ledger.history.follow(after, block_ms=WAIT_MS):
            after = entry.id
            yield {"id": entry.id, "event": "entry", "data": json.dumps(entry.public())}
