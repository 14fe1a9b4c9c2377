-- Takes the next job to submit, if Apiframe's limits allow one now: the first caller in turn
-- with a job waiting gives its first (by priority, then arrival), and goes to the back of the
-- turn. The job is leased to the taker; a lease that ends (its taker died) puts it back.
-- A caller at its own cap (`IMAGEDOCK_CALLER_RATE`, `IMAGEDOCK_CALLER_IN_FLIGHT`) lets the next
-- caller go instead.
-- KEYS: none. ARGV: the script config, now, the most submits a second, the most in flight,
-- lease seconds, the seconds after which a job still counted in flight is let go (its end was
-- never seen: a record removed by hand), and the callers' caps as JSON {rate, in_flight}.
-- Returns {1, ref, caller} or {0, seconds to wait (-1: until a job finishes or arrives), why}.
-- uses: queue_place
local c = cjson.decode(ARGV[1])
local now, most_rate, most_in_flight, lease =
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local stale_before, caps = now - tonumber(ARGV[6]), cjson.decode(ARGV[7])
redis.call('ZREMRANGEBYSCORE', c.in_flight, '-inf', stale_before)

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

-- When the caller `caller` may send next: 0 now, -1 once one of its jobs finishes, else the
-- time its own rate allows.
local function allowed(caller)
  local most = caps.in_flight[caller]
  if most then
    local mine = c.in_flight_of .. caller
    redis.call('ZREMRANGEBYSCORE', mine, '-inf', stale_before)
    if redis.call('ZCARD', mine) >= most then return -1 end
  end
  if caps.rate[caller] then
    local at = tonumber(redis.call('HGET', c.pace, 'next_at:' .. caller)) or 0
    if at > now then return at end
  end
  return 0
end

local soonest = nil
for _ = 1, redis.call('LLEN', c.waiting_callers) do
  local caller = redis.call('LMOVE', c.waiting_callers, c.waiting_callers, 'LEFT', 'RIGHT')
  local queue = c.waiting .. caller
  local when = allowed(caller)
  local first = redis.call('ZRANGE', queue, 0, 0)[1]
  if not first then
    redis.call('LREM', c.waiting_callers, 0, caller)
  elseif when ~= 0 then
    if when > 0 and (not soonest or when < soonest) then soonest = when end
  else
    unplace(c, caller, first)
    local job = c.job .. first
    local status, job_id = unpack(redis.call('HMGET', job, 'status', 'job_id'))
    if status and not c.final[status] and not (job_id and job_id ~= '') then
      redis.call('ZADD', c.sending, now + lease, first)
      redis.call('ZADD', c.in_flight_of .. caller, now, first)
      -- Evenly spaced; a taker that woke late may catch up what it lost, up to a tenth of a
      -- second's worth (or one interval, if longer): a busy host's late wakes never slow the
      -- pace below the rate, and no catching up comes near a second's worth of submits.
      local interval = 1 / rate
      local behind = math.max(interval, 0.1)
      redis.call('HSET', c.pace, 'next_at', math.max(next_at, now - behind) + interval)
      local own = caps.rate[caller]
      if own then
        local at = tonumber(redis.call('HGET', c.pace, 'next_at:' .. caller)) or 0
        -- A caller's own cap is kept strictly: no catching up on a late taker.
        redis.call('HSET', c.pace, 'next_at:' .. caller, math.max(at, now) + 1 / own)
      end
      return {1, first, caller}
    end
  end
end
if soonest then return {0, tostring(soonest - now), 'callers at their own rate'} end
return {0, '-1', 'callers at their caps, or jobs no longer waiting'}
