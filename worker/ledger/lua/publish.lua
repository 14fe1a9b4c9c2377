-- Appends an event to the event stream, once, and keeps its stub (ref, type, timestamp) under
-- its key; the job then owes nothing and needs no more polls. A new event is logged
-- (`event.published`) in the same call.
-- KEYS: event key, stream, job hash, poll set. ARGV: event JSON, stream maxlen, ref, TTL, stub,
-- the script config, actor, job id, now.
-- The event is kept no longer than its job (a job Apiframe never took is kept a day).
-- Returns 1 if the event is new, 0 if it was published before.
-- uses: log_entry
local keep = tonumber(ARGV[4])
local job_ttl = redis.call('TTL', KEYS[3])
if job_ttl > 0 and job_ttl < keep then keep = job_ttl end
local fresh = redis.call('SET', KEYS[1], ARGV[5], 'NX', 'EX', keep)
if fresh then
  local event = cjson.decode(ARGV[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
    'id', event['id'], 'type', event['type'], 'payload', ARGV[1])
  append_log(cjson.decode(ARGV[6]), ARGV[3], ARGV[8], ARGV[7], 'event.published',
    cjson.encode({id = event['id'], type = event['type']}), ARGV[9])
end
redis.call('HDEL', KEYS[3], 'pending_event')
redis.call('ZREM', KEYS[4], ARGV[3])
if fresh then return 1 end
return 0
