-- A piece, not a script: arq's enqueue (arq 0.28 `ArqRedis.enqueue_job`), for scripts that queue
-- a job in the same call that changes the ledger: refused while the job or its kept result
-- exists (so duplicates collapse exactly as `_job_id` makes them), else the payload and the
-- queue entry. `args` holds a `QueuedJob.script_args()` list from position `at`.
-- Returns 1 if queued, 0 if it collapsed.
local function enqueue(args, at)
  local id, key, result_key, queue, payload, score, expires_ms = unpack(args, at, at + 6)
  if redis.call('EXISTS', key, result_key) > 0 then return 0 end
  redis.call('PSETEX', key, expires_ms, payload)
  redis.call('ZADD', queue, score, id)
  return 1
end
