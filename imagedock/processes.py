"""The long-running processes, each over one set of clients from `open_deps`."""

import uvicorn

from imagedock.clients import open_deps
from imagedock.http_server import uvicorn_config
from receiver.app import create_app
from worker.runner import supervise, workers_for
from worker.settings import Settings


def run_receiver(settings: Settings, *, host: str, port: int) -> int:
    """`imagedock receiver`: the API and the webhook endpoint; its lifespan opens the clients."""
    app = create_app(settings, open_deps)
    uvicorn.Server(uvicorn_config(app, host=host, port=port)).run()
    return 0


async def run_worker(settings: Settings) -> int:
    """`imagedock worker`: the landing and polling workers, sharing one set of clients."""
    settings.require("apiframe_key", "s3_bucket")
    if settings.event_urls:
        settings.require("event_secret")
    async with open_deps(settings) as deps:
        return await supervise(workers_for(deps))
