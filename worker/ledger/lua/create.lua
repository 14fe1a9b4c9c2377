-- Makes a record, with its indexes, its count and its `job.created` entry, unless its ref has
-- one already (two requests naming one ref, a caller's key sent twice at once, make one).
-- A job to be queued is admitted first (`admit`): refused, nothing is written.
-- KEYS: none. ARGV: the script config, ref, the record's fields (JSON), the job id or '', the
-- caller or '', the log entry's detail (JSON), now, the admission (JSON, `admit`'s `a`) or ''.
-- Returns 1 if made, 0 if the ref had a record, or `admit`'s refusal.
-- uses: log_entry, admit
local c = cjson.decode(ARGV[1])
local ref, job_id, caller, now = ARGV[2], ARGV[4], ARGV[5], ARGV[7]
local job = c.job .. ref
if redis.call('EXISTS', job) == 1 then return 0 end
local held
if ARGV[8] ~= '' then
  local a = cjson.decode(ARGV[8])
  local refused
  refused, held = admit(c, a)
  if refused then return refused end
  if held then
    redis.call('HSET', job, 'credits_held', held, 'credits_day', a.day, 'credits_caller', a.caller)
  end
end
local fields = cjson.decode(ARGV[3])
for name, value in pairs(fields) do redis.call('HSET', job, name, value) end
redis.call('ZADD', c.by_time, now, ref)
redis.call('ZADD', c.by_status .. fields.status, now, ref)
redis.call('ZADD', c.by_model .. fields.model, now, ref)
redis.call('SADD', c.models_seen, fields.model)
redis.call('HINCRBY', c.stats, c.counters.jobs_submitted, 1)
if caller ~= '' then
  redis.call('ZADD', c.by_caller .. caller, now, ref)
  redis.call('SADD', c.callers_seen, caller)
  redis.call('HINCRBY', c.stats, c.counters.caller_jobs .. caller, 1)
end
if job_id ~= '' then
  redis.call('HSET', job, 'job_id', job_id, 'submitted_at', now)
  redis.call('SET', c.job_id .. job_id, ref)
end
append_log(c, ref, job_id, 'receiver', 'job.created', ARGV[6], now)
return 1
