"""`imagedock worker`: the landing and polling workers in one process, started again when Redis
goes away.

arq lets a lost Redis connection escape its poll loop and end the worker; this loop restarts both
after a pause, so a Redis failover does not depend on the orchestrator noticing.
"""

import asyncio
import signal

import structlog
from arq import Worker
from redis.exceptions import ConnectionError, TimeoutError

from worker.settings import Settings
from worker.tasks import build_poll_worker, build_worker

log = structlog.get_logger("worker")
RESTART_PAUSE = 2.0


def run_worker(settings: Settings) -> int:
    settings.require("apiframe_key", "s3_bucket")
    if settings.event_urls:
        settings.require("event_secret")
    return asyncio.run(supervise(settings))


async def supervise(settings: Settings) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    while not stopping.is_set():
        workers = [
            build_worker(settings, handle_signals=False),
            build_poll_worker(settings, handle_signals=False),
        ]
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, workers, signum, stopping)
        results = await asyncio.gather(*(w.async_run() for w in workers), return_exceptions=True)
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
        lost = [r for r in results if isinstance(r, ConnectionError | TimeoutError | OSError)]
        if lost and not stopping.is_set():
            log.error("worker.redis_lost", error=repr(lost[0]), restart_in=RESTART_PAUSE)
            await asyncio.sleep(RESTART_PAUSE)
        else:
            break
    return 0


def stop(workers: list[Worker], signum: int, stopping: asyncio.Event) -> None:
    """SIGTERM: arq cancels running jobs, which another worker runs again at once."""
    stopping.set()
    for worker in workers:
        worker.handle_sig(signal.Signals(signum))
