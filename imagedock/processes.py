"""The long-running processes, each over one set of clients from `open_deps`."""

from imagedock.clients import open_deps
from worker.runner import supervise, workers_for
from worker.settings import Settings


async def run_worker(settings: Settings) -> int:
    """`imagedock worker`: the landing and polling workers, sharing one set of clients."""
    settings.require("apiframe_key", "s3_bucket")
    if settings.event_urls:
        settings.require("event_secret")
    async with open_deps(settings) as deps:
        return await supervise(workers_for(deps))
