"""Security headers on every answer, whatever route, refusal or file it is.

No answer of the receiver's may be framed (the dashboard framed by another site, logged in,
would put its Redrive button under a stranger's page), sniffed for another type, or leak its URL
in a Referer. A route that sets a header of its own (the dashboard's full policy) keeps it.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
RAW = [(name.lower().encode(), value.encode()) for name, value in HEADERS.items()]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # One pass over the raw headers, names lowercase as ASGI has them.
                raw = message.setdefault("headers", [])
                present = {name.lower() for name, _ in raw}
                missing = [pair for pair in RAW if pair[0] not in present]
                message["headers"] = [*raw, *missing]
            await send(message)

        await self.app(scope, receive, send_with_headers)
