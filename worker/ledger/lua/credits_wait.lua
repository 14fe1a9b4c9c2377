-- Submitting paused for Apiframe's balance after its 402 (`worker.dispatch`). `short`: a 402,
-- asking for `needed` credits: paused until `until` at least, the pause marked as the 402's.
-- `extend`: the balance read is still short: the 402's pause goes on to `until`. `resume`: the
-- balance holds what was asked for: the 402's pause ends. A pause set since for another reason
-- (a 429's Retry-After, a refused key), which replaced the 402's, is left alone.
-- KEYS: none. ARGV: the script config, short | extend | resume, until, needed, why.
-- Returns 1 if the 402's wait was there to act on (always, for `short`), else 0.
local c = cjson.decode(ARGV[1])
local mode, until_ = ARGV[2], tonumber(ARGV[3])
local paused, ours = unpack(redis.call('HMGET', c.pace, 'paused_until', 'credits_until'))
if mode == 'short' then
  local to = math.max(tonumber(paused) or 0, until_)
  redis.call('HSET', c.pace, 'paused_until', to, 'credits_until', to, 'why', ARGV[5],
    'credits_needed', ARGV[4])
  return 1
end
if not redis.call('HGET', c.pace, 'credits_needed') then return 0 end
local still_ours = paused and paused == ours
if mode == 'extend' then
  if still_ours and until_ > tonumber(paused) then
    redis.call('HSET', c.pace, 'paused_until', until_, 'credits_until', until_)
  end
  return 1
end
redis.call('HDEL', c.pace, 'credits_needed', 'credits_until')
if still_ours then redis.call('HDEL', c.pace, 'paused_until', 'why') end
return 1
