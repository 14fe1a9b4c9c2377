"""Serving an ASGI app with uvicorn inside a running event loop, for the demo and tests."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp

from imagedock.http_server import uvicorn_config


def bound_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening address claimed now, so its URL is known before the app that serves it.

    Made as TCP by name: asyncio sets TCP_NODELAY only on connections accepted from a socket
    whose protocol says TCP, and without it an answer written in two parts (head, then body)
    waits out the client's delayed ACK, some 40 ms, whenever a client sends one request at a
    time."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@asynccontextmanager
async def serving(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields its base URL. Port 0 picks a free port."""
    sock = sock or bound_socket(host, port)
    server = uvicorn.Server(uvicorn_config(app, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped while starting")
            await asyncio.sleep(0.005)
        yield socket_url(sock)
    finally:
        server.should_exit = True
        await task
        sock.close()
