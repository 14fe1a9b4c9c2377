-- Whether a caller may queue one more job: its queue is not full, and its credits for the day
-- hold the job's likely cost (what its model last cost, else `estimate`), which the job then
-- holds until it ends (`move`: settled then at what Apiframe charged, 0 if it never ran).
-- KEYS: none. ARGV: the script config, caller, model, the UTC day, the most jobs waiting per
-- caller, the caller's credits a day ('' for no cap), estimate.
-- Returns {1, credits held} | {0, 'waiting', jobs waiting} | {0, 'credits', needed, left}.
local c = cjson.decode(ARGV[1])
local caller, model, day = ARGV[2], ARGV[3], ARGV[4]
local most, cap = tonumber(ARGV[5]), tonumber(ARGV[6])
local waiting = redis.call('ZCARD', c.waiting .. caller)
if waiting >= most then return {0, 'waiting', waiting} end
if not cap then return {1, '0'} end
local needed = tonumber(redis.call('HGET', c.credit_costs, model)) or tonumber(ARGV[7])
local key = c.credits_day .. day
local held = tonumber(redis.call('HGET', key, caller)) or 0
if held + needed > cap then
  return {0, 'credits', tostring(needed), tostring(math.max(cap - held, 0))}
end
redis.call('HINCRBYFLOAT', key, caller, needed)
redis.call('EXPIRE', key, 2 * 86400)  -- a job ending past midnight settles on its own day
return {1, tostring(needed)}
