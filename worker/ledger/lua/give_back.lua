-- A taken job Apiframe did not take this time: back to the front of its caller's queue, and
-- submitting paused for `pause` seconds (0: not) with the reason; `slow` halves the rate in
-- force (down to `least`), as a 429 asks.
-- KEYS: none. ARGV: the script config, ref, now, pause, why, slow (1 or 0), the most submits
-- a second, the least.
-- Returns 1 if the job is waiting again.
-- uses: queue_place
local c = cjson.decode(ARGV[1])
local ref, now, pause, why = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local slow, most_rate, least = ARGV[6] == '1', tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('ZREM', c.sending, ref)
if pause > 0 then
  local until_ = math.max(tonumber(redis.call('HGET', c.pace, 'paused_until')) or 0, now + pause)
  redis.call('HSET', c.pace, 'paused_until', until_, 'why', why)
end
if slow then
  local rate = math.min(tonumber(redis.call('HGET', c.pace, 'rate')) or most_rate, most_rate)
  redis.call('HSET', c.pace, 'rate', math.max(rate / 2, least))
end
local status, job_id = unpack(redis.call('HMGET', c.job .. ref, 'status', 'job_id'))
if not status or c.final[status] or (job_id and job_id ~= '') then return 0 end
place(c, ref)
return 1
