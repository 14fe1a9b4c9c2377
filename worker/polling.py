"""The polling fallback: ask Apiframe about jobs whose webhook has not come.

Jobs due for a check sit in a sorted set scored by their next check time, so a poll costs what is
due, not what is tracked. Claiming moves a job's score forward atomically, so pollers on several
workers never check the same job at once, and a poller that dies mid-check only delays it.
"""

import asyncio
import time
from dataclasses import dataclass

from worker import metrics
from worker.apiframe import ApiframeClient, ApiframeError, Job, JobNotFound, RateLimited
from worker.apiframe.catalog import route_named
from worker.apiframe.results import dumps
from worker.events import Events
from worker.ledger import keys
from worker.ledger.compaction import compact_due
from worker.ledger.ledger import Ledger
from worker.ledger.records import JobRecord, costed, text
from worker.ledger.scripts import source
from worker.ledger.waiting import SubmitQueue
from worker.runtime.queue import enqueue_landing
from worker.settings import Settings
from worker.status import FINAL, Status, from_apiframe
from worker.traces import job_span

ACTOR = "poller"
BATCH = 100
LEASE = 120.0  # longer than one check can take: a GET's 60 s timeout and its blip retries
FIRST_INTERVAL = 2.0
CONCURRENCY = 10


@dataclass(frozen=True)
class PollingDeps:
    ledger: Ledger
    events: Events
    apiframe: ApiframeClient
    settings: Settings  # the intervals and deadlines
    queue: SubmitQueue  # jobs accepted, not yet submitted


async def poll_due(deps: PollingDeps, *, budget: float = 25.0) -> int:
    """Check every job that is due, a batch at a time, within `budget` seconds."""
    claim = deps.ledger.redis.register_script(source("claim"))
    await deps.ledger.forget_older(time.time())
    started, checked = time.monotonic(), 0
    limit = asyncio.Semaphore(CONCURRENCY)

    async def check(ref: str) -> None:
        async with limit:
            await check_job(deps, ref)

    while time.monotonic() - started < budget:
        due = [
            text(ref) or ""
            for ref in await claim(keys=[keys.POLL_SET], args=[time.time(), BATCH, LEASE])
        ]
        if not due:
            break
        await asyncio.gather(*(check(ref) for ref in due))
        checked += len(due)
    if deps.ledger.archive is not None:
        ended_before = time.time() - deps.settings.compact_after
        await compact_due(deps.ledger, deps.ledger.archive, ended_before)
    return checked


async def check_job(deps: PollingDeps, ref: str) -> None:
    ledger = deps.ledger
    record = await ledger.get(ref)
    if record is None:
        await ledger.redis.zrem(keys.POLL_SET, ref)
        return
    if record.pending_event:  # a crash between a terminal state and its event
        await deps.events.publish_pending(ref, ACTOR)
        return
    if record.status in FINAL:
        await ledger.redis.zrem(keys.POLL_SET, ref)
        return
    if record.job_id is None:
        await check_unsubmitted(deps, record)
        return
    if record.status == Status.COMPLETED:
        await check_unlanded(deps, record)
        return
    with job_span("job.poll", record.trace, **{"imagedock.job_id": record.job_id}):
        await check_running(deps, record)


async def check_running(deps: PollingDeps, record: JobRecord) -> None:
    """Ask Apiframe how the job is doing, and follow what it says."""
    assert record.job_id is not None
    ledger, ref = deps.ledger, record.ref
    try:
        job = await deps.apiframe.get_job(record.job_id)
    except JobNotFound:
        await deps.events.finish(
            ref, Status.FAILED, ACTOR, error=f"Apiframe does not know job {record.job_id}"
        )
        return
    except ApiframeError as exc:
        await ledger.log(ref, record.job_id, ACTOR, "poll.error", error=str(exc))
        wait = exc.retry_after if isinstance(exc, RateLimited) else None
        await reschedule(deps, record, at_least=wait)
        return
    await follow(deps, record, job)


async def check_unsubmitted(deps: PollingDeps, record: JobRecord) -> None:
    """A job Apiframe has not taken yet (throttled, no credits, an outage): taken out of the
    submit queue and failed with the reason once past the submit deadline, so none waits for
    ever; one being sent right now is left to its answer."""
    age = time.time() - record.created_at
    if age <= deps.settings.submit_deadline or await deps.queue.withdraw(record.ref) is None:
        await reschedule(deps, record)
        return
    why = record.error or (await deps.queue.pace()).why or "no answer"
    reason = f"never submitted to Apiframe in {round(age)} s: {why}"
    await deps.events.finish(record.ref, Status.FAILED, ACTOR, error=reason)


async def check_unlanded(deps: PollingDeps, record: JobRecord) -> None:
    """Known complete but not landed: the landing may have been lost, so it is queued again
    (collapsing into one still queued or running), until the landing deadline fails the job."""
    assert record.job_id is not None
    since = time.time() - (record.completed_at or record.updated_at)
    if since > deps.settings.landing_deadline:
        reason = f"not landed {round(since)} s after Apiframe completed it"
        if record.error:
            reason += f"; last error: {record.error}"
        await deps.events.finish(record.ref, Status.FAILED, ACTOR, error=reason)
        return
    await enqueue_landing(deps.events.redis, record.job_id)
    await reschedule(deps, record)


async def follow(deps: PollingDeps, record: JobRecord, job: Job) -> None:
    """Act on what Apiframe says of a job no webhook has finished."""
    ledger, ref = deps.ledger, record.ref
    assert record.job_id is not None
    if job.status == "COMPLETED":
        moved = await ledger.transition(
            ref,
            Status.COMPLETED,
            ACTOR,
            progress=100,
            assets=dumps(job.assets),
            model=record.model or job.model or "",
            via="poll",
            **costed(job.credit_cost),
        )
        if moved:  # else a webhook got there between the poll's read and its move
            await missed(ledger, record, job.status)
        await enqueue_landing(deps.events.redis, record.job_id)
        await reschedule(deps, record)
    elif job.status in ("FAILED", "CANCELLED"):
        reason = job.error or f"Apiframe reports the job {job.status}"
        status = from_apiframe(job.status)
        if await deps.events.finish(ref, status, ACTOR, error=reason, via="poll"):
            await missed(ledger, record, job.status)
    else:
        await ledger.transition(ref, from_apiframe(job.status), ACTOR, progress=job.progress)
        started = record.submitted_at or record.created_at
        route = route_named(record.operation)
        if time.time() - started > deps.settings.job_deadline * route.lasts:
            reason = f"still {job.status} {round(time.time() - started)} s after submission"
            await deps.events.finish(ref, Status.TIMED_OUT, ACTOR, error=reason, via="poll")
        else:
            await reschedule(deps, record)


async def missed(ledger: Ledger, record: JobRecord, status: str) -> None:
    """The poller found a finished job no webhook told us about: the alarm that counts."""
    await ledger.log(
        record.ref,
        record.job_id,
        ACTOR,
        "webhook.missed",
        counting=(metrics.WEBHOOKS_MISSED,),
        status=status,
    )


async def reschedule(
    deps: PollingDeps, record: JobRecord, *, at_least: float | None = None
) -> None:
    """The next check, backing off per job from its route's cadence (2 s for images, 5 s for
    video and music, as Apiframe advises) to the configured cap, and never sooner than a
    429's Retry-After."""
    route = route_named(record.operation)
    first = max(FIRST_INTERVAL, route.poll_every)
    interval = min((record.poll_interval or first / 2) * 2, deps.settings.poll_max_interval)
    await deps.ledger.set_fields(record.ref, poll_interval=interval)
    wait = max(interval, at_least or 0.0)  # the backoff goes on from its own interval
    await deps.ledger.schedule_poll(record.ref, time.time() + wait, only_if_tracked=True)
