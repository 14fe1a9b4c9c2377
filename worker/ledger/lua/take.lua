-- Takes the next job to submit, if Apiframe's limits allow one now: the first caller in turn
-- with a job waiting gives its first (by priority, then arrival), and goes to the back of the
-- turn. The job is leased to the taker; a lease that ends (its taker died) puts it back.
-- KEYS: none. ARGV: the script config, now, the most submits a second, the most in flight,
-- lease seconds, and the seconds after which a job still counted in flight is let go (its
-- end was never seen: a record removed by hand).
-- Returns {1, ref, caller} or {0, seconds to wait (-1: until a job finishes or arrives), why}.
-- uses: queue_place
local c = cjson.decode(ARGV[1])
local now, most_rate, most_in_flight, lease =
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', c.in_flight, '-inf', now - tonumber(ARGV[6]))

for _, ref in ipairs(redis.call('ZRANGEBYSCORE', c.sending, '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', c.sending, ref)
  place(c, ref)
end

local rate, next_at, paused_until, why =
  unpack(redis.call('HMGET', c.pace, 'rate', 'next_at', 'paused_until', 'why'))
paused_until = tonumber(paused_until) or 0
if paused_until > now then return {0, tostring(paused_until - now), why or 'paused'} end
if redis.call('LLEN', c.waiting_callers) == 0 then return {0, '-1', 'nothing waiting'} end
local busy = redis.call('ZCARD', c.in_flight) + redis.call('ZCARD', c.sending)
if busy >= most_in_flight then
  return {0, '-1', 'at the limit of ' .. most_in_flight .. ' jobs in flight'}
end
rate = math.min(tonumber(rate) or most_rate, most_rate)
next_at = tonumber(next_at) or 0
if next_at > now then return {0, tostring(next_at - now), 'paced'} end

for _ = 1, redis.call('LLEN', c.waiting_callers) do
  local caller = redis.call('LMOVE', c.waiting_callers, c.waiting_callers, 'LEFT', 'RIGHT')
  local queue = c.waiting .. caller
  local first = redis.call('ZRANGE', queue, 0, 0)[1]
  if first then
    unplace(c, caller, first)
    local job = c.job .. first
    local status, job_id = unpack(redis.call('HMGET', job, 'status', 'job_id'))
    if status and not c.final[status] and not (job_id and job_id ~= '') then
      redis.call('ZADD', c.sending, now + lease, first)
      -- Evenly spaced; a taker that woke late may send the next one that much sooner.
      local interval = 1 / rate
      redis.call('HSET', c.pace, 'next_at', math.max(next_at, now - interval) + interval)
      return {1, first, caller}
    end
  else
    redis.call('LREM', c.waiting_callers, 0, caller)
  end
end
return {0, '0', 'skipped jobs no longer waiting'}
