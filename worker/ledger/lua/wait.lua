-- Queues an accepted job for submission, once: a job queued again keeps its place. In the same
-- call, the poller is told to watch the job (its submit deadline) and the log says it queued.
-- KEYS: none. ARGV: the script config, ref, caller, priority band (0 first), now, when the
-- poller should first look, the actor, the priority's name.
-- Returns 1 if queued now, 0 if it was already (or is no longer waiting: sent or finished).
-- uses: queue_place, log_entry
local c = cjson.decode(ARGV[1])
local ref, caller, band, now = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local job = c.job .. ref
local status, job_id = unpack(redis.call('HMGET', job, 'status', 'job_id'))
if not status or c.final[status] or (job_id and job_id ~= '') then return 0 end
if not redis.call('HGET', job, 'queue_score') then
  -- Bands far apart, arrivals in order inside each: a score stays exact below 2^53.
  local score = band * 1e12 + redis.call('INCR', c.arrivals)
  redis.call('HSET', job, 'queue_caller', caller, 'queue_score', score, 'queued_at', now)
end
redis.call('ZADD', c.poll_set, 'NX', ARGV[6], ref)
if place(c, ref) == 0 then return 0 end
append_log(c, ref, '', ARGV[7], 'job.queued', cjson.encode({priority = ARGV[8]}), now)
return 1
