"""Limits every request meets before a route reads it: the size of its headers and its target.

uvicorn's httptools parser accepts headers of any size, and whatever a handler logs or stores of
them would grow with it; a request past these limits is answered without being looked at.
"""

from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.responses import error

MAX_HEADER_BYTES = 16 * 1024
MAX_TARGET_BYTES = 4 * 1024  # path and query string


class RequestLimits:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = sum(len(name) + len(value) for name, value in scope["headers"])
            target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            refusal = None
            if headers > MAX_HEADER_BYTES:
                refusal = (431, f"request headers are over {MAX_HEADER_BYTES} bytes")
            elif target > MAX_TARGET_BYTES:
                refusal = (414, f"the request target is over {MAX_TARGET_BYTES} bytes")
            if refusal is not None:
                status, message = refusal
                await error(status, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)
