-- A signed webhook, decided and recorded in one call (see `worker.intake`): the submission found
-- by ref or job id, the job id checked, the webhook's time recorded and the poll pushed back,
-- the log entry written, the state moved forward, the landing queued in arq's own format, and
-- the outcome counted.
-- KEYS: none. ARGV: the script config; the webhook: ref, job id, status, progress, the fields
-- the move sets (JSON), now, when the next poll is due, the signature variant, the histogram's
-- key, bucket and value; then, for a completed job, the landing job (`QueuedJob.script_args()`).
-- Returns {outcome, ref, status before, queued (1 or 0), the job's trace context ('' if none)}.
-- uses: move, enqueue
local c = cjson.decode(ARGV[1])
local ref, job_id, status, progress, fields, now, poll_at, variant = unpack(ARGV, 2, 9)
local histogram, bucket, waited = unpack(ARGV, 10, 12)
if ref == '' then ref = redis.call('GET', c.job_id .. job_id) or '' end
if ref == '' or not redis.call('HGET', c.job .. ref, 'status') then
  return {'unknown', ref, '', 0}
end
local job = c.job .. ref
local attached = redis.call('HGET', job, 'job_id') or ''
if attached == '' then return {'early', ref, '', 0} end
if attached ~= job_id then
  redis.call('HINCRBY', c.stats, c.counters.webhooks_rejected .. 'other_job', 1)
  return {'other_job', ref, '', 0}
end
redis.call('HSET', job, 'last_webhook_at', now, 'poll_interval', 0)
redis.call('ZADD', c.poll_set, 'XX', poll_at, ref)
-- A webhook that changes nothing (a duplicate, a replay, a stale progress) is counted, never
-- logged: a flood of them must not push a job's history, or everyone's, out of the logs.
local ends = status == 'FAILED' or status == 'CANCELLED'
local will, current = movable(job, status, progress, c)
if ends and c.final[current] then will = 0 end
if will > 0 then
  append_log(c, ref, job_id, 'receiver', 'webhook.accepted',
    cjson.encode({status = status, variant = variant}), now)
end
if ends and will > 0 then return {'finish', ref, '', 0} end
local moved = move(ref, status, progress, 'receiver', now, fields, c)
-- Queued again while the job waits to land (a lost landing comes back; a queued one collapses),
-- not once it has ended.
local queued = 0
if status == 'COMPLETED' and redis.call('HGET', job, 'status') == 'COMPLETED' then
  queued = enqueue(ARGV, 13)
end
local outcome = 'duplicate'
if moved[1] > 0 then outcome = 'accepted' end
redis.call('HINCRBY', c.stats, c.counters.webhooks_received .. outcome, 1)
if moved[1] == 1 and status == 'COMPLETED' then
  redis.call('HINCRBY', histogram, bucket, 1)
  redis.call('HINCRBYFLOAT', histogram, 'sum', waited)
end
return {outcome, ref, moved[2], queued, redis.call('HGET', job, 'trace') or ''}
