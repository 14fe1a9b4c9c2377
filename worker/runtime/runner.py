"""`imagedock worker`: the landing and polling workers and the submitting loop in one process,
over one set of clients.

arq lets a lost Redis connection escape its poll loop and end the worker; the worker that lost it
is started again after a pause, so a Redis failover does not depend on the orchestrator noticing.
Any other error that ends a worker while Redis answers is a bug or a broken deployment: the other
worker is stopped and the process exits non-zero, so the orchestrator restarts it and it shows.
"""

import asyncio
import contextlib
import signal
from collections.abc import Callable, Mapping
from typing import Protocol

import redis.exceptions as redis_errors
import structlog
from redis.asyncio import Redis

from worker.deps import Deps
from worker.dispatch import Dispatcher
from worker.runtime.cancelling import cancel_until_done
from worker.runtime.tasks import build_poll_worker, build_worker

log = structlog.get_logger("worker")
RESTART_PAUSE = 2.0
STOP_GRACE = 10.0
PING_TIMEOUT = 2.0
# redis-py's own: anything else is asked of Redis itself (a PING) before it counts as lost.
REDIS_LOST = (redis_errors.ConnectionError, redis_errors.TimeoutError)
# Connection errors that no pause mends: a wrong password stays wrong.
REDIS_REFUSED = (redis_errors.AuthenticationError, redis_errors.AuthorizationError)


class Runnable(Protocol):
    """What the supervisor runs: an arq worker (`StoppableWorker`), or the `Dispatcher`."""

    @property
    def pool(self) -> Redis: ...

    async def async_run(self) -> None: ...

    def stop(self, signum: signal.Signals = ..., *, wait: float | None = None) -> object: ...

    async def release(self) -> None: ...


Build = Callable[[], Runnable]


class WorkerStopped(Exception):
    """A worker's loop ended although nobody asked it to stop."""


def workers_for(deps: Deps) -> dict[str, Build]:
    return {
        "landing": lambda: build_worker(deps, handle_signals=False),
        "polling": lambda: build_poll_worker(deps, handle_signals=False),
        "submitting": lambda: Dispatcher(
            deps.submitting, credits_recheck=deps.settings.credits_recheck
        ),
    }


async def supervise(
    builds: Mapping[str, Build], *, stop_wait: float = 0.0, restart_pause: float = RESTART_PAUSE
) -> int:
    """Run every worker until SIGINT or SIGTERM (0), or until one dies of anything but a lost
    Redis connection (1)."""
    stopping = asyncio.Event()
    current: dict[str, Runnable] = {}

    def stop(signum: int) -> None:
        """Each worker takes no new job and gives running ones its `stop_wait` to finish, then
        cancels the rest, leaving them queued, so another worker runs them at once. A second
        signal changes nothing: jobs finishing go on."""
        if stopping.is_set():
            return
        stopping.set()
        for worker in current.values():
            worker.stop(signal.Signals(signum))

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    tasks = [
        asyncio.create_task(keep_running(name, build, current, stopping, restart_pause))
        for name, build in builds.items()
    ]
    stopped = asyncio.create_task(stopping.wait())
    try:
        # A worker's task ends only when it is told to stop, or when it dies.
        done, _ = await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
        failed = next((t for t in tasks if t in done and t.exception() is not None), None)
        stop(signal.SIGTERM)
        await wind_down(tasks, stop_wait + STOP_GRACE)
        if failed is not None:
            error = failed.exception()
            log.error("worker.died", error=repr(error), exc_info=error)
            return 1
        return 0
    finally:
        stopped.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def wind_down(tasks: list[asyncio.Task[None]], grace: float = STOP_GRACE) -> None:
    """Give the workers `grace` seconds to stop, then cancel what is left: nothing a worker
    waits on may hang the exit."""
    _, pending = await asyncio.wait(tasks, timeout=grace)
    await cancel_until_done(pending)
    await asyncio.gather(*tasks, return_exceptions=True)


async def keep_running(
    name: str,
    build: Build,
    current: dict[str, Runnable],
    stopping: asyncio.Event,
    restart_pause: float,
) -> None:
    """Run one worker, starting it again after a lost Redis connection, until `stopping`."""
    while not stopping.is_set():
        worker = current[name] = build()
        try:
            await worker.async_run()
        except REDIS_REFUSED as exc:
            raise WorkerStopped(f"the {name} worker was refused by Redis: {exc!r}") from exc
        except (Exception, asyncio.CancelledError) as exc:
            if stopping.is_set():
                return
            if isinstance(exc, asyncio.CancelledError) and cancelled():
                raise  # this task itself is cancelled (the loop is closing): not arq's doing
            # What ends a worker while Redis does not answer is the outage's doing, whatever
            # its type: arq re-raises a job task's error (or its cancellation) from its loop.
            if not isinstance(exc, REDIS_LOST) and await answers(worker.pool):
                raise WorkerStopped(f"the {name} worker died: {exc!r}") from exc
            log.error("worker.redis_lost", worker=name, error=repr(exc), restart_in=restart_pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), restart_pause)
            continue
        finally:
            await worker.release()
        if not stopping.is_set():
            raise WorkerStopped(f"the {name} worker stopped by itself")


def cancelled() -> bool:
    """Whether the running task has been asked to cancel."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def answers(redis: Redis) -> bool:
    """Whether Redis answers a PING within `PING_TIMEOUT` seconds."""
    try:
        async with asyncio.timeout(PING_TIMEOUT):
            return bool(await redis.ping())
    except (redis_errors.RedisError, OSError, TimeoutError):
        return False
