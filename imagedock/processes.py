"""The long-running processes, each over one set of clients from `open_deps`."""

import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
import uvicorn
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from imagedock.clients import open_deps
from imagedock.http_server import PUBLIC, uvicorn_config
from imagedock.tracing import configure_tracing, traced
from receiver.app import create_app
from worker.deps import Deps
from worker.ledger.records import text
from worker.runtime.heartbeat import beating
from worker.runtime.runner import supervise, workers_for
from worker.settings import Settings, load_settings
from worker.structured_logging import configure_logging

log = structlog.get_logger("imagedock")
GRACEFUL = 20  # seconds: under Kubernetes' default 30 s termination grace


def run_receiver(settings: Settings, *, host: str, port: int, workers: int = 1) -> int:
    """`imagedock receiver`: the API and the webhook endpoint; its lifespan opens the clients.
    With `workers` above 1, that many processes share the port (uvicorn's supervisor restarts
    one that dies), each building the app from the environment (`receiver_app`).

    On SIGTERM or SIGINT uvicorn stops accepting, lets requests in flight finish (for up to
    `GRACEFUL` seconds, so an open event stream cannot hold it), closes, and then raises the
    signal again to the handler it found. That handler is a no-op here: a receiver that shut
    down as asked exits 0, and an orchestrator does not count it as a crash."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    options = {"host": host, "port": port, "timeout_graceful_shutdown": GRACEFUL, **PUBLIC}
    if workers > 1:
        settings.require("apiframe_key", "api_token", "public_url")  # fail here, not N times
        app = "imagedock.processes:receiver_app"
        config = uvicorn_config(app, factory=True, workers=workers, **options)
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    configure_tracing("imagedock-receiver", redis=True)
    config = uvicorn_config(traced(create_app(settings, open_server_deps)), **options)
    uvicorn.Server(config).run()
    return 0


def receiver_app() -> Starlette:
    """The receiver as each of several worker processes builds it, from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level, stream=sys.stdout)
    configure_tracing("imagedock-receiver", redis=True)
    return traced(create_app(settings, open_server_deps))


@asynccontextmanager
async def open_server_deps(settings: Settings) -> AsyncIterator[Deps]:
    """A long-running process's clients, and a warning if Redis would lose them on restart."""
    async with open_deps(settings) as deps:
        await warn_if_volatile(deps.redis)
        yield deps


async def warn_if_volatile(redis: Redis) -> None:
    """The ledger and the queues live in Redis: without persistence a restart forgets every
    job in flight (imagedock then recovers what it can, and says so here first)."""
    try:
        answers = {**await redis.config_get("appendonly"), **await redis.config_get("save")}
        config = {text(name): text(value) for name, value in answers.items()}
    except RedisError:  # managed Redis often refuses CONFIG; its persistence is its own
        return
    if config.get("appendonly") != "yes" and not config.get("save"):
        log.warning(
            "redis.not_persistent",
            advice="turn on appendonly (AOF) so a restart keeps the ledger and the queues",
        )


async def run_worker(settings: Settings) -> int:
    """`imagedock worker`: the landing and polling workers and the submitting loop, sharing
    one set of clients. It submits with the webhook URL `IMAGEDOCK_PUBLIC_URL` names."""
    settings.require("apiframe_key", "s3_bucket", "public_url")
    if settings.event_urls:
        settings.require("event_secret")
    configure_tracing("imagedock-worker")
    async with open_server_deps(settings) as deps, beating(deps.redis):
        return await supervise(workers_for(deps), stop_wait=settings.stop_wait)
