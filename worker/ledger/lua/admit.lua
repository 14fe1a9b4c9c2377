-- A piece, not a script: whether a caller may queue one more job, run by `create` before it
-- makes the record. Its queue must not be full, and its credits for the day must hold the
-- job's likely cost (what its model last cost, else the estimate), which the job then holds
-- until it ends (`move` settles it at what Apiframe charged, 0 if it never ran).
-- `a`: {caller, model, day, most (jobs waiting), cap (credits a day, or absent), estimate}.
-- Returns nil and the credits held (nil if the caller has no cap), or a refusal:
-- {-1, 'waiting', jobs waiting} | {-1, 'credits', needed, left}.
local function admit(c, a)
  local waiting = redis.call('ZCARD', c.waiting .. a.caller)
  if waiting >= a.most then return {-1, 'waiting', waiting} end
  if not a.cap then return nil, nil end
  local needed = tonumber(redis.call('HGET', c.credit_costs, a.model)) or a.estimate
  local key = c.credits_day .. a.day
  local held = tonumber(redis.call('HGET', key, a.caller)) or 0
  if held + needed > a.cap then
    return {-1, 'credits', tostring(needed), tostring(math.max(a.cap - held, 0))}
  end
  redis.call('HINCRBYFLOAT', key, a.caller, needed)
  redis.call('EXPIRE', key, 2 * 86400)  -- a job ending past midnight settles on its own day
  return nil, needed
end
