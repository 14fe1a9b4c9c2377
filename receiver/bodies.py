"""Reading a request body with a cap on its size and a deadline on its arrival, so neither a
huge body nor a slow one can hold the receiver's memory or a connection for long."""

import asyncio

from starlette.requests import ClientDisconnect, Request

API_BODY = 64 * 1024


class BodyRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_capped(request: Request, limit: int, deadline: float) -> bytes:
    """The body, or BodyRefused: 413 past `limit` bytes, 408 if it is slower than `deadline`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyRefused(413, f"the body is over {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(deadline):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BodyRefused(413, f"the body is over {limit} bytes")
    except TimeoutError:
        raise BodyRefused(408, f"the body took over {deadline:g} s to arrive") from None
    except ClientDisconnect:
        raise BodyRefused(400, "the client left before its body arrived") from None
    return bytes(body)
