-- A piece, not a script: one log entry, appended to the job's own log and to the global one.
-- The fields are those `worker.ledger.log.entry` writes from Python. `c` is the script config.
local function append_log(c, ref, job_id, actor, event, detail, now)
  local entry = {'ts', now, 'actor', actor, 'event', event, 'ref', ref, 'job_id', job_id,
    'detail', detail}
  if ref ~= '' then
    redis.call('XADD', c.job_log .. ref, 'MAXLEN', '~', c.job_log_max, '*', unpack(entry))
  end
  redis.call('XADD', c.global_log, 'MAXLEN', '~', c.global_log_max, '*', unpack(entry))
end
