-- A piece, not a script: the one way a record's state changes, run by `transition` and
-- `webhook`. Forward only (or a higher progress at the same rank); the fields set with the
-- move, the status indexes moved, the log entry written. A job that ends keeps its keys for the
-- retention, then Redis forgets it: the manifest in S3 is the permanent record.
-- Returns {1 moved | 2 progress raised | 0 nothing | -1 no record, status before, job id}.
-- uses: log_entry

-- What moving the job at `job` to `new` (with `progress`, or '') would do: 1 move, 2 raise the
-- progress, 0 nothing, -1 no record; and the status it has now.
local function movable(job, new, progress, c)
  local current = redis.call('HGET', job, 'status')
  if not current then return -1, '' end
  if c.final[current] or c.ranks[new] < c.ranks[current] then return 0, current end
  if c.ranks[new] == c.ranks[current] then
    local had = tonumber(redis.call('HGET', job, 'progress')) or -1
    if progress == '' or tonumber(progress) <= had then return 0, current end
    return 2, current
  end
  return 1, current
end

-- A job that ends settles the credits it held against its caller's day (`admit`) at what
-- Apiframe charged: its `credit_cost` where Apiframe said; else what it held, if Apiframe
-- finished it (it charged then, whatever became of the landing), and nothing if not (Apiframe
-- refunds a failed job; one never sent cost nothing). The most a model was seen to cost is
-- what the next job of it holds.
local function settle(c, job, current)
  local held, day, caller, cost, model = unpack(redis.call('HMGET', job, 'credits_held',
    'credits_day', 'credits_caller', 'credit_cost', 'model'))
  cost = tonumber(cost)
  if cost and cost > 0 and model and model ~= '' then
    local most = tonumber(redis.call('HGET', c.credit_costs, model)) or 0
    if cost > most then redis.call('HSET', c.credit_costs, model, cost) end
  end
  if not held then return end
  redis.call('HDEL', job, 'credits_held')
  local key = c.credits_day .. day
  if redis.call('EXISTS', key) == 0 then return end  -- a day gone by: nothing left to settle
  local finished = c.ranks[current] >= c.ranks.COMPLETED
  local spent = cost or (finished and tonumber(held)) or 0
  redis.call('HINCRBYFLOAT', key, caller, spent - tonumber(held))
end

local function move(ref, new, progress, actor, now, fields, c)
  local job = c.job .. ref
  local will, current = movable(job, new, progress, c)
  if will == -1 then return {-1, '', ''} end
  local job_id = redis.call('HGET', job, 'job_id') or ''
  if will == 0 then return {0, current, job_id} end
  if will == 2 then
    redis.call('HSET', job, 'progress', progress, 'updated_at', now)
    return {2, current, job_id}
  end
  for name, value in pairs(cjson.decode(fields)) do redis.call('HSET', job, name, value) end
  redis.call('HSET', job, 'status', new, 'updated_at', now)
  if progress ~= '' then redis.call('HSET', job, 'progress', progress) end
  redis.call('ZREM', c.by_status .. current, ref)
  redis.call('ZADD', c.by_status .. new, redis.call('HGET', job, 'created_at') or now, ref)
  append_log(c, ref, job_id, actor, 'status.changed', cjson.encode({from = current, to = new}),
    now)
  -- Apiframe has finished with it: a place among the jobs in flight there is free again.
  if c.ranks[new] >= c.ranks.COMPLETED then
    redis.call('ZREM', c.in_flight, ref)
    local caller = redis.call('HGET', job, 'queue_caller')
    if caller then redis.call('ZREM', c.in_flight_of .. caller, ref) end
  end
  if c.final[new] then
    settle(c, job, new == 'LANDED' and 'COMPLETED' or current)
    -- A job Apiframe never took (refused, or never reached) cost nothing and keeps little.
    local keep = c.retention
    if job_id == '' then keep = c.unsent_retention end
    for _, key in ipairs({job, c.job_log .. ref, c.objects .. ref}) do
      redis.call('EXPIRE', key, keep)
    end
    if job_id ~= '' then redis.call('EXPIRE', c.job_id .. job_id, keep) end
    -- Its timeline goes to S3 and its record shrinks once it has settled (`compaction`).
    redis.call('ZADD', c.compact, now, ref)
  end
  return {1, current, job_id}
end
