"""The arq workers: thin task functions over the domain, and each worker's settings.

Two queues, so that polling's longer timeout never slows crash recovery for landings:
- landing (`land`, `deliver`, `replay`, `bulk_replay`): a landing's own deadline is 90 s for
  four images (`IMAGEDOCK_LANDING_TIMEOUT`), more for models that return more (225 s for ten)
  and for what takes longer (a video ten times an image's: 900 s); arq's `job_timeout` is the
  longest of them plus a margin, 905 s. arq's claim on a job would last as long (plus 10 s)
  for every function on the queue; here it lasts `IMAGEDOCK_CLAIM` (30 s) and is renewed while
  the job runs, so the job of a worker that died (a delivery, a landing) is run again by
  another within 30 s. `max_tries` 30 with backoff from 5 s to 5 min rides out about two hours
  of outage, and arq counts every restart as a try, so a run of deploys cannot exhaust it.
  `keep_result` 0: an enqueue after a task finished runs a cheap no-op instead of being refused
  for an hour.
- polling: the `poll` cron, every 2 s, once per tick across workers (`unique`), and at start-up.
No landing-queue function sets a longer timeout of its own: arq's `job_timeout` is the bound.
The landing worker polls its queue every 0.01 s (arq's 0.5 s default caps a worker near 200
jobs/s, and the wait is most of a webhook's time to landing: 27 ms at 0.05 s, BENCHMARKS.md),
at 100 idle commands a second; the polling worker every 0.05 s. Both speak JSON.
Both share the process's one set of clients (`Deps`, in `ctx["deps"]`), its Redis pool included.
"""

import asyncio
from typing import Any

import structlog
from arq import Retry
from arq.cron import cron
from arq.worker import func
from redis.exceptions import RedisError

from worker import replays
from worker.apiframe.catalog import GENERATE
from worker.deps import Deps
from worker.landing.errors import TransientError
from worker.landing.job import LONGEST_LANDING, LandingDeps, NotReady, land_job, landing_timeout
from worker.ledger.keys import LANDING_QUEUE, POLLING_QUEUE, digest
from worker.polling import poll_due
from worker.runtime.arq_worker import StoppableWorker
from worker.runtime.queue import (
    BULK_REPLAY,
    DELIVER,
    LAND,
    PROGRESS,
    REPLAY,
    deserialize,
    landing_pending,
    serialize,
)
from worker.settings import Settings
from worker.sinks.callback import NAME as CALLBACKS
from worker.sinks.callback import CallbackSink, wants_progress
from worker.sinks.delivery import DeliveryRetry, deliver_event
from worker.status import FINAL, Status
from worker.traces import job_span

ARQ_MARGIN = 5.0  # arq's timeout over the landing's own, so the landing's always fires first
NOT_READY_TRIES = 5
REPLAY_WAIT = 5.0  # seconds a replay waits, each time, for the job's own landing to end
POLL_TIMEOUT = 60
log = structlog.get_logger("worker")
LANDING_POLL_DELAY = 0.01  # seconds between the landing worker's reads of its queue


def backoff(base: float, attempt: int, retry_after: float | None = None) -> float:
    wait: float = min(base * 2.0 ** (attempt - 1), 300.0)
    return max(wait, retry_after or 0.0)


async def land(ctx: dict[str, Any], job_id: str) -> str:
    deps: LandingDeps = ctx["deps"].landing
    settings: Settings = ctx["deps"].settings
    with structlog.contextvars.bound_contextvars(job_id=job_id, job_try=ctx["job_try"]):
        try:
            record = await deps.ledger.by_job_id(job_id)
        except TransientError as exc:  # a compacted job's timeline out of reach: later
            raise Retry(defer=backoff(settings.landing_backoff, ctx["job_try"])) from exc
        limit = landing_timeout(
            settings.landing_timeout,
            record.operation if record else GENERATE,
            record.model if record else "",
        )
        try:
            # Our own deadline, inside arq's: a slow landing is a failure that counts, where
            # arq's timeout would end the job with no word and no retry.
            kept = record.trace if record else None
            async with asyncio.timeout(limit):
                with job_span("job.land", kept, **{"imagedock.job_id": job_id}):
                    return (await land_job(deps, job_id, record=record)).value
        except TimeoutError:
            error: TransientError = TransientError(f"landing took over {limit:g} s")
        except TransientError as exc:
            error = exc
        return await retry_or_fail(deps, settings, job_id, error)


async def retry_or_fail(
    deps: LandingDeps, settings: Settings, job_id: str, exc: TransientError
) -> str:
    """Count the failed attempt in the ledger, which a re-queue by the poller does not reset,
    and retry later with backoff, or fail the job once the count reaches the limit."""
    record = await deps.ledger.by_job_id(job_id)
    if record is None:
        raise exc
    attempt = await deps.ledger.count_failure(record.ref)
    limit = NOT_READY_TRIES if isinstance(exc, NotReady) else settings.landing_max_tries
    if attempt >= limit:
        reason = f"gave up after {attempt} tries: {exc}"
        await deps.events.finish(record.ref, Status.FAILED, "worker", error=reason)
        return Status.FAILED.value
    wait = backoff(settings.landing_backoff, attempt, exc.retry_after)
    await deps.ledger.log(
        record.ref,
        job_id,
        "worker",
        "landing.retry",
        reason=str(exc),
        attempt=attempt,
        retry_in=wait,
    )
    raise Retry(defer=wait) from exc


async def replay(ctx: dict[str, Any], job_id: str) -> str:
    """Land again (restoring anything missing from S3) and deliver the events again; after the
    job's own landing, if one is queued or running, so that the two never download twice."""
    deps: LandingDeps = ctx["deps"].landing
    if await landing_pending(deps.ledger.redis, job_id):
        raise Retry(defer=REPLAY_WAIT)
    status = await land(ctx, job_id)
    record = await deps.ledger.by_job_id(job_id)
    if record is not None and record.status == Status.LANDED:
        await land_job(deps, job_id, "replay", verify=True)
    if record is not None:
        await deps.events.republish(record, "replay")
    return status


async def bulk_replay(ctx: dict[str, Any], bulk_id: str, offset: int) -> int:
    """A share of a bulk replay or resubmit (`worker.replays`); it queues the next."""
    try:
        went = await replays.work_through(ctx["deps"].submitting, bulk_id, offset)
    except RedisError as exc:  # the share runs again; what it did is not done twice
        raise Retry(defer=REPLAY_WAIT) from exc
    log.info("bulk.progress", bulk=bulk_id, offset=offset, jobs=went)
    return went


async def deliver(ctx: dict[str, Any], event_id: str, sink_name: str) -> str:
    deps: Deps = ctx["deps"]
    sink = deps.events.resolve(sink_name)
    if sink is None:  # taken out of the settings since the delivery was queued
        log.warning("event.sink_gone", event_id=event_id, sink=digest(sink_name))
        return "dropped"
    with structlog.contextvars.bound_contextvars(event_id=event_id, sink=sink.name):
        if sink.blocked_by is not None:
            log.error("event.unsigned", reason=f"{sink.blocked_by} is not set")
            raise Retry(defer=60)
        try:
            return await deliver_event(deps.delivery, event_id, sink)
        except DeliveryRetry as exc:
            raise Retry(defer=exc.defer) from exc
        except TransientError as exc:  # the job's timeline in S3 out of reach: later
            log.warning("event.record_unreadable", error=str(exc))
            raise Retry(defer=60) from exc


async def progress(ctx: dict[str, Any], ref: str, value: int) -> str:
    """A `/v2/` caller's `progress` webhook, once: a later one, or the end, says more."""
    deps: Deps = ctx["deps"]
    record = await deps.ledger.get(ref)
    sink = deps.events.resolve(CALLBACKS)
    if record is None or record.status in FINAL or not isinstance(sink, CallbackSink):
        return "unserved"
    if not wants_progress(record):
        return "unserved"
    sent = await sink.send_progress(record, value)
    log.info("callback.progress", ref=ref, progress=value, ok=sent.ok, status=sent.status)
    return "delivered" if sent.ok else "failed"


async def poll(ctx: dict[str, Any]) -> int:
    """One pass of the poller. arq runs it once per tick across every worker (a unique cron
    job; its score is the tick's time in ms); a pass that checked jobs says so."""
    checked = await poll_due(ctx["deps"].polling)
    level = log.info if checked else log.debug
    level("poll.pass", tick=ctx.get("score"), checked=checked)
    return checked


def common(deps: Deps) -> dict[str, Any]:
    return {
        "redis_pool": deps.redis,
        "ctx": {"deps": deps},
        "poll_delay": 0.05,  # the landing worker's own is shorter
        "health_check_interval": 30,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
    }


def build_worker(deps: Deps, **overrides: Any) -> StoppableWorker:
    """The landing worker; tests pass `burst=True, handle_signals=False`."""
    settings = deps.settings
    # arq counts every start, crashes and deploys included: its cap sits well above the ledger's
    # count of failed attempts, which is the one that decides.
    tries = 2 * settings.landing_max_tries + 10
    deliveries = len(settings.event_retry_schedule) + tries
    options: dict[str, Any] = {
        **common(deps),
        "functions": [
            func(land, name=LAND, keep_result=0, max_tries=tries),
            func(replay, name=REPLAY, keep_result=0, max_tries=tries),
            func(bulk_replay, name=BULK_REPLAY, keep_result=0, max_tries=tries),
            func(deliver, name=DELIVER, keep_result=0, max_tries=deliveries),
            func(progress, name=PROGRESS, keep_result=0, max_tries=1),
        ],
        "queue_name": LANDING_QUEUE,
        # The longest landing any route and model may take: arq's timeout must outlast it.
        "job_timeout": LONGEST_LANDING * settings.landing_timeout + ARQ_MARGIN,
        "max_tries": tries,
        "max_jobs": 20,
        "poll_delay": LANDING_POLL_DELAY,
        "job_completion_wait": settings.stop_wait,
        "claim": settings.claim,
        **overrides,
    }
    return StoppableWorker(**options)


def build_poll_worker(deps: Deps, **overrides: Any) -> StoppableWorker:
    """The polling worker: the `poll` cron on a queue of its own."""
    options: dict[str, Any] = {
        **common(deps),
        "functions": [],
        "cron_jobs": [
            cron(
                poll,
                name="poll",
                second=set(range(0, 60, 2)),
                unique=True,
                run_at_startup=True,
                timeout=POLL_TIMEOUT,
                keep_result=0,
            )
        ],
        "queue_name": POLLING_QUEUE,
        "job_timeout": POLL_TIMEOUT,
        "max_jobs": 1,
        **overrides,
    }
    return StoppableWorker(**options)
