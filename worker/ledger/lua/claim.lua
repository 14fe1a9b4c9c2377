-- Claims the jobs due for a poll: each one's score moves a lease forward, so pollers on several
-- workers never check the same job at once, and one that dies mid-check only delays it.
-- KEYS: poll set. ARGV: now, batch size, lease. Returns the refs due now, each leased.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, ref in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[1]) + tonumber(ARGV[3]), ref)
end
return due
