-- A taken job that Apiframe took: its lease ends, it counts as in flight until it finishes,
-- and the rate in force, if a 429 lowered it, rises by one submit a second per second.
-- KEYS: none. ARGV: the script config, ref, now, the most submits a second.
-- Returns 1 if the job counts as in flight.
local c = cjson.decode(ARGV[1])
local ref, now, most_rate = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREM', c.sending, ref)
redis.call('HDEL', c.pace, 'failures')
local rate = tonumber(redis.call('HGET', c.pace, 'rate'))
if rate then
  if rate + 1 / rate >= most_rate then
    redis.call('HDEL', c.pace, 'rate')
  else
    redis.call('HSET', c.pace, 'rate', rate + 1 / rate)
  end
end
local status = redis.call('HGET', c.job .. ref, 'status')
if not status or c.ranks[status] >= c.ranks.COMPLETED then return 0 end
redis.call('ZADD', c.in_flight, now, ref)
return 1
