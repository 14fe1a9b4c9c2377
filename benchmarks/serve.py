"""One server process of several sharing a port (SO_REUSEPORT), for the scale-up benchmark and the
reference: `python -m benchmarks.serve receiver|reference --port P --ready FILE`.

`imagedock receiver --workers N` runs its processes under uvicorn's supervisor; here N processes
bind one port with SO_REUSEPORT instead, so the reference can be served exactly the same way.
The `receiver` kind here is that command's app, settings and logging set-up, built the same
way (`imagedock.cli.main`, `imagedock.processes.run_receiver`); only the listening socket
differs. The `reference` kind is a bare Starlette endpoint that
parses the webhook's JSON and answers a small JSON body. Both run under the same uvicorn options
(`imagedock.http_server.uvicorn_config` with `PUBLIC`).
"""

import argparse
import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from imagedock.http_server import PUBLIC, uvicorn_config


async def parse_only(request: Request) -> JSONResponse:
    """The reference: read the body, parse it, answer as the receiver does."""
    json.loads(await request.body())
    return JSONResponse({"accepted": True})


def reference_app() -> Starlette:
    return Starlette(routes=[Route("/webhooks/apiframe", parse_only, methods=["POST"])])


async def parse_and_call(request: Request) -> JSONResponse:
    """The second reference: the same, plus one round trip to Redis (a trivial script, through
    imagedock's own pool settings): what any handler that calls Redis once pays."""
    event = json.loads(await request.body())
    await request.state.script(keys=["bench:reference"], args=[event["jobId"]])
    return JSONResponse({"accepted": True})


def redis_reference_app() -> Starlette:
    from worker.runtime.queue import connect

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        redis = await connect(os.environ["IMAGEDOCK_REDIS_URL"])
        try:
            yield {"script": redis.register_script("return redis.call('SET', KEYS[1], ARGV[1])")}
        finally:
            await redis.aclose()

    routes = [Route("/webhooks/apiframe", parse_and_call, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)


async def accept_and_call(request: Request) -> JSONResponse:
    """The reference for `POST /jobs`: parse the job, one Redis script call, a 202."""
    job = json.loads(await request.body())
    await request.state.script(keys=["bench:accepted"], args=[job["prompt"]])
    return JSONResponse({"jobId": None, "ref": "0" * 32, "status": "QUEUED"}, status_code=202)


def accept_reference_app() -> Starlette:
    app = redis_reference_app()
    app.router.routes.append(Route("/jobs", accept_and_call, methods=["POST"]))
    return app


def receiver_app() -> ASGIApp:
    from imagedock.processes import open_server_deps
    from imagedock.tracing import configure_tracing, traced
    from receiver.app import create_app
    from worker.settings import load_settings
    from worker.structured_logging import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, stream=sys.stdout)
    configure_tracing("imagedock-receiver", redis=True)
    return traced(create_app(settings, open_server_deps))


def shared_socket(port: int) -> socket.socket:
    # TCP by name, as uvicorn's own sockets are, so asyncio sets TCP_NODELAY on its connections
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


async def serve(server: uvicorn.Server, sock: socket.socket, ready: Path) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped while starting")
        await asyncio.sleep(0.01)
    await asyncio.to_thread(ready.touch)
    await task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "kind", choices=["receiver", "reference", "reference-redis", "reference-accept"]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready", type=Path, required=True, help="touched once serving")
    args = parser.parse_args()
    apps: dict[str, Callable[[], ASGIApp]] = {
        "receiver": receiver_app,
        "reference": reference_app,
        "reference-redis": redis_reference_app,
        "reference-accept": accept_reference_app,
    }
    app = apps[args.kind]()
    config = uvicorn_config(app, **PUBLIC)
    server = uvicorn.Server(config)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve(server, shared_socket(args.port), args.ready))


if __name__ == "__main__":
    main()
