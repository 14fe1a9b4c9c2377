"""A signed webhook, decided and recorded in one Redis call: the script finds the submission by
ref or job id, checks the job id, records the webhook's time and pushes back the poll, writes the
log entry, moves the state forward, queues the landing in arq's own format, and counts the
outcome. The rare paths (no record, no job id yet, a failure to finish) are answered as such, and
the caller takes them the longer way."""

import time
from dataclasses import dataclass
from typing import Literal

from worker.apiframe import WebhookEvent
from worker.batching import BatchedScript
from worker.ledger import MOVE, Ledger, echo, move_fields, text
from worker.measures import WEBHOOK_ENQUEUE
from worker.queue import ENQUEUE, landing_job
from worker.status import Status

ACTOR = "receiver"
Outcome = Literal["accepted", "duplicate", "unknown", "early", "other_job", "finish"]

# ARGV: the ledger's script config; the webhook: ref, job id, status, progress, the fields the
# move sets (JSON), now, when the next poll is due, the signature variant, the histogram's key,
# bucket and value; then, for a completed job, the landing job (`QueuedJob.script_args()`).
# Returns {outcome, ref, status before, queued (1 or 0)}.
WEBHOOK = (
    MOVE
    + ENQUEUE
    + """
local c = cjson.decode(ARGV[1])
local ref, job_id, status, progress, fields, now, poll_at, variant = unpack(ARGV, 2, 9)
local histogram, bucket, waited = unpack(ARGV, 10, 12)
if ref == '' then ref = redis.call('GET', c.job_id_index .. job_id) or '' end
if ref == '' or not redis.call('HGET', c.jobs .. ref, 'status') then
  return {'unknown', ref, '', 0}
end
local job = c.jobs .. ref
local attached = redis.call('HGET', job, 'job_id') or ''
if attached == '' then return {'early', ref, '', 0} end
if attached ~= job_id then
  redis.call('HINCRBY', c.stats, c.rejected .. 'other_job', 1)
  return {'other_job', ref, '', 0}
end
redis.call('HSET', job, 'last_webhook_at', now, 'poll_interval', 0)
redis.call('ZADD', c.poll_set, 'XX', poll_at, ref)
local entry = {'ts', now, 'actor', 'receiver', 'event', 'webhook.accepted', 'ref', ref,
  'job_id', job_id, 'detail', cjson.encode({status = status, variant = variant})}
redis.call('XADD', c.logs .. ref, 'MAXLEN', '~', c.job_log_max, '*', unpack(entry))
redis.call('XADD', c.global_log, 'MAXLEN', '~', c.global_log_max, '*', unpack(entry))
if status == 'FAILED' or status == 'CANCELLED' then return {'finish', ref, '', 0} end
local moved = move(job, c.logs .. ref, c.objects .. ref, status, progress, 'receiver', now,
  fields, c)
-- Queued again while the job waits to land (a lost landing comes back; a queued one collapses),
-- not once it has ended.
local queued = 0
if status == 'COMPLETED' and redis.call('HGET', job, 'status') == 'COMPLETED' then
  queued = enqueue(ARGV, 13)
end
local outcome = 'duplicate'
if moved[1] > 0 then outcome = 'accepted' end
redis.call('HINCRBY', c.stats, 'webhook:' .. outcome, 1)
if moved[1] == 1 and status == 'COMPLETED' then
  redis.call('HINCRBY', histogram, bucket, 1)
  redis.call('HINCRBYFLOAT', histogram, 'sum', waited)
end
return {outcome, ref, moved[2], queued}
"""
)


@dataclass(frozen=True)
class Taken:
    outcome: Outcome
    ref: str
    queued: bool


class Intake:
    def __init__(self, ledger: Ledger, poll_after: float) -> None:
        self.ledger = ledger
        self.poll_after = poll_after
        self._script = BatchedScript(ledger.redis, WEBHOOK)

    async def take(
        self, ref: str | None, event: WebhookEvent, variant: str, *, waited: float
    ) -> Taken:
        """Record a signed webhook for the submission `ref` (or the one holding its job id);
        `waited` is how long it has been in hand, observed if it queues a landing."""
        now = time.time()
        status = Status(event.status)
        fields: dict[str, object] = {}
        progress: int | str = "" if event.progress is None else event.progress
        if status == Status.COMPLETED:
            fields = {"result_urls": event.image_urls, "via": "webhook"}
            progress = 100
        landing = landing_job(event.job_id).script_args() if status == Status.COMPLETED else []
        args = [
            self.ledger.script_config(),
            ref or "",
            event.job_id,
            status.value,
            str(progress),
            move_fields(status, fields),
            now,
            now + self.poll_after,
            variant,
            WEBHOOK_ENQUEUE.key,
            WEBHOOK_ENQUEUE.bucket(waited),
            waited,
            *landing,
        ]
        outcome, found, before, queued = await self._script(args)
        taken = Taken(text(outcome), text(found) or "", bool(int(queued)))  # type: ignore[arg-type]
        if taken.outcome in ("accepted", "duplicate", "finish"):
            detail = {"status": event.status, "variant": variant}
            echo("webhook.accepted", taken.ref, event.job_id, ACTOR, detail)
        if taken.outcome == "accepted" and text(before) != status.value:
            echo(
                "status.changed",
                taken.ref,
                event.job_id,
                ACTOR,
                {"from": text(before), "to": status},
            )
        return taken
