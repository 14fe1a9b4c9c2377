"""Replaying or resubmitting every job a filter selects (`POST /jobs/replay`,
`imagedock replay --status S --since T`).

The selection is counted first and kept (its refs, oldest first), then worked through in the
background by the landing worker, `CHUNK` jobs a task, each task queueing the next: a replay
lands the job again and delivers its events again; a resubmit queues a new job with the old
one's request, whose lineage names it (`resubmitted_from`). Both are safe to run twice, so a
task that dies is simply run again: a replay is idempotent, and a resubmit's Idempotency-Key
is derived from the bulk replay and the old job. One bulk replay runs at a time; its progress
is kept for a week (`Progress`).
"""

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from worker.ledger import keys
from worker.ledger.admission import NotAdmitted
from worker.ledger.keys import LANDING_QUEUE
from worker.ledger.ledger import Conflict
from worker.ledger.records import JobRecord, text
from worker.ledger.waiting import Priority
from worker.references import BadReference
from worker.runtime.queue import enqueue_bulk_replay, enqueue_replay
from worker.status import Status
from worker.submission import BadParent, Callback, SubmitDeps, accept_job, request_of
from worker.timestamps import iso_time

MOST = 10_000  # jobs one bulk replay may select
CHUNK = 200  # jobs one task works through before it queues the next
REPLAY_INTERVAL = 60.0  # seconds: a job replayed more often than that replays once
BUSY = 2 * CHUNK  # landings waiting past which the next share waits, so live landings go first
BUSY_WAIT = 5.0  # seconds it waits then
KEPT = 7 * 24 * 3600  # seconds a bulk replay's selection and progress are kept
RUNNING_AT_MOST = 3600  # seconds the one-at-a-time mark outlives a bulk replay that died
ACTOR = "replay"
log = structlog.get_logger("replays")


@dataclass(frozen=True)
class Filter:
    """Which jobs: those with `status` created in [since, until], of `model` if given."""

    status: Status
    since: float
    until: float | None = None
    model: str | None = None

    def said(self) -> str:
        model = f" of {self.model}" if self.model else ""
        until = f" until {iso_time(self.until)}" if self.until is not None else ""
        return f"{self.status.value} jobs{model} created since {iso_time(self.since)}{until}"


class NothingSelected(ValueError):
    """The filter selects no job, or more than a bulk replay takes; `field` is the one to
    change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class AlreadyRunning(Exception):
    def __init__(self, bulk_id: str) -> None:
        super().__init__(
            f"bulk replay {bulk_id} is running: one runs at a time (GET /jobs/replay/{bulk_id})"
        )
        self.bulk_id = bulk_id


@dataclass
class Progress:
    """A bulk replay's state, as `GET /jobs/replay/{id}` and `imagedock replay` show it."""

    id: str
    filter: str
    resubmit: bool
    selected: int
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # outcome -> jobs
    created_at: float = 0.0
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def public(self) -> dict[str, Any]:
        return {**asdict(self), "finished": self.finished}


async def select(redis: ArqRedis, chosen: Filter) -> list[str]:
    """The refs `chosen` selects, oldest first; `NothingSelected` naming the field to change
    if none are, or more than `MOST`. Reads at most `MOST` + 1 records' models."""
    until = "+inf" if chosen.until is None else chosen.until
    listed = await redis.zrangebyscore(
        keys.by_status(chosen.status.value), chosen.since, until, start=0, num=MOST + 1
    )
    refs = [text(ref) or "" for ref in listed]
    if not refs:
        raise NothingSelected("status", f"no {chosen.said()}")
    if len(refs) > MOST:
        raise NothingSelected("since", f"more than {MOST:,} {chosen.said()}: narrow the range")
    if chosen.model is not None:
        async with redis.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.hget(keys.job(ref), "model")
            models = await pipe.execute()
        refs = [ref for ref, model in zip(refs, models, strict=True) if text(model) == chosen.model]
        if not refs:
            raise NothingSelected("model", f"no {chosen.said()}")
    return refs


async def start(
    redis: ArqRedis,
    chosen: Filter,
    refs: list[str],
    *,
    resubmit: bool,
    priority: Priority = Priority.low,
) -> Progress:
    """Keep the selection and queue its first task; `AlreadyRunning` if another runs."""
    bulk_id = uuid.uuid4().hex
    if not await redis.set(keys.BULK_RUNNING, bulk_id, nx=True, ex=RUNNING_AT_MOST):
        raise AlreadyRunning(text(await redis.get(keys.BULK_RUNNING)) or "")
    progress = Progress(bulk_id, chosen.said(), resubmit, len(refs), created_at=time.time())
    try:
        await keep(redis, progress, refs, priority)
        await enqueue_bulk_replay(redis, bulk_id, 0)
    except BaseException:  # never started: the next may start at once
        await redis.delete(keys.BULK_RUNNING)
        raise
    return progress


async def keep(redis: ArqRedis, progress: Progress, refs: list[str], priority: Priority) -> None:
    """The selection and its progress, kept a week."""
    bulk_id = progress.id
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(keys.bulk_refs(bulk_id), *refs)
        pipe.hset(
            keys.bulk(bulk_id),
            mapping={
                "filter": progress.filter,
                "resubmit": int(progress.resubmit),
                "priority": priority.name,
                "selected": len(refs),
                "created_at": progress.created_at,
            },
        )
        pipe.expire(keys.bulk_refs(bulk_id), KEPT)
        pipe.expire(keys.bulk(bulk_id), KEPT)
        await pipe.execute()


async def progress_of(redis: ArqRedis, bulk_id: str) -> Progress | None:
    kept = await redis.hgetall(keys.bulk(bulk_id))  # type: ignore[misc]
    raw = {text(name) or "": text(value) or "" for name, value in kept.items()}
    if "filter" not in raw:
        return None
    counts: dict[str, int] = {}
    done = 0
    for name, value in raw.items():
        if name.startswith("chunk:"):  # each chunk's outcomes, written once it is through
            chunk = json.loads(value)
            done += sum(chunk.values())
            for outcome, count in chunk.items():
                counts[outcome] = counts.get(outcome, 0) + count
    return Progress(
        bulk_id,
        raw["filter"],
        raw["resubmit"] == "1",
        int(raw["selected"]),
        done,
        counts,
        float(raw["created_at"]),
        float(raw["finished_at"]) if raw.get("finished_at") else None,
    )


async def work_through(deps: SubmitDeps, bulk_id: str, offset: int) -> int:
    """One task's share: the `CHUNK` jobs from `offset`, then the next task queued (later if
    the landing queue is busy), or the bulk replay marked finished. A share already through
    (its task run again) only makes sure the next is queued. Returns how many jobs it went
    through. A Redis error is raised for arq to run the task again; any other error fails
    only its own job."""
    redis, kept = deps.redis, keys.bulk(bulk_id)
    resubmit, priority, done = await redis.hmget(kept, ["resubmit", "priority", f"chunk:{offset}"])  # type: ignore[misc]
    if resubmit is None:
        return 0  # kept no longer
    if text(await redis.get(keys.BULK_RUNNING)) == bulk_id:  # a long one keeps its turn
        await redis.expire(keys.BULK_RUNNING, RUNNING_AT_MOST)
    listed = await redis.lrange(keys.bulk_refs(bulk_id), offset, offset + CHUNK - 1)  # type: ignore[misc]
    if done is None:
        counts: dict[str, int] = {}
        for ref in (text(one) or "" for one in listed):
            outcome = await one_job(
                deps, ref, bulk_id, text(resubmit) == "1", Priority[text(priority) or "low"]
            )
            counts[outcome] = counts.get(outcome, 0) + 1
        await redis.hset(kept, f"chunk:{offset}", json.dumps(counts))  # type: ignore[misc]
    if len(listed) == CHUNK:
        busy = await redis.zcard(LANDING_QUEUE) > BUSY
        await enqueue_bulk_replay(redis, bulk_id, offset + CHUNK, later=BUSY_WAIT if busy else 0)
    else:
        await redis.hset(kept, mapping={"finished_at": time.time()})  # type: ignore[misc]
        if text(await redis.get(keys.BULK_RUNNING)) == bulk_id:
            await redis.delete(keys.BULK_RUNNING)
    return len(listed)


async def one_job(
    deps: SubmitDeps, ref: str, bulk_id: str, resubmit: bool, priority: Priority
) -> str:
    """One selected job replayed or resubmitted; its outcome."""
    try:
        record = await deps.ledger.get(ref)
        if record is None:
            return "gone"
        if resubmit:
            return await resubmit_one(deps, record, bulk_id, priority)
        return await replay_one(deps, record, bulk_id)
    except RedisError:
        raise
    except Exception as exc:  # this job's own trouble: the others go on
        log.exception("bulk.job_failed", bulk=bulk_id, ref=ref, error=repr(exc))
        return "error"


async def replay_one(deps: SubmitDeps, record: JobRecord, bulk_id: str) -> str:
    """Land the job again and deliver its events again; one Apiframe never had is skipped,
    and so is one replayed in the last `REPLAY_INTERVAL` seconds (by this or by hand)."""
    if record.job_id is None:
        return "skipped"
    if await deps.ledger.marks.once_within(keys.replaying(record.job_id), REPLAY_INTERVAL):
        return "skipped"
    await enqueue_replay(deps.redis, record.job_id)
    await deps.ledger.log(record.ref, record.job_id, ACTOR, "job.replay_requested", bulk=bulk_id)
    return "replayed"


async def resubmit_one(deps: SubmitDeps, old: JobRecord, bulk_id: str, priority: Priority) -> str:
    """A new job with the old one's request, caller and webhook, whose lineage names it. A job
    imagedock did not submit (tracked) has no request to make again: skipped."""
    if old.source != "submit":
        return "skipped"
    callback = Callback(old.callback_url, old.callback_events) if old.callback_url else None
    try:
        new = await accept_job(
            deps,
            request_of(old),
            metadata=old.metadata,
            idempotency_key=f"resubmit:{bulk_id}:{old.ref}",
            actor=ACTOR,
            caller=old.caller,
            callback=callback,
            priority=priority,
            resubmitted_from=old.ref,
        )
    except (BadParent, BadReference, NotAdmitted, Conflict) as exc:
        await deps.ledger.log(old.ref, old.job_id, ACTOR, "job.resubmit_refused", error=str(exc))
        return "refused"
    await deps.ledger.log(old.ref, old.job_id, ACTOR, "job.resubmitted", ref=new.ref, bulk=bulk_id)
    return "resubmitted"
