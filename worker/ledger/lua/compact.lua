-- Leaves a finished job's summary in Redis once its timeline is in S3 (`worker.ledger.compaction`):
-- the record becomes the few fields the job list filters on and the archive's key, and the
-- objects and the log go. Only if nothing changed since the timeline was read: the same
-- `updated_at`, no event owed, the same last log entry; else it is tried again later.
-- KEYS: job hash, objects hash, job log, compaction set. ARGV: ref, `updated_at` as read, the
-- last log entry's id as read ('' for none), the archive's key, the fields kept (JSON).
-- Returns 1 compacted, 0 the record is gone, -1 changed meanwhile.
local updated = redis.call('HGET', KEYS[1], 'updated_at')
if not updated then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local last_id = ''
if last[1] then last_id = last[1][1] end
if updated ~= ARGV[2] or last_id ~= ARGV[3]
  or redis.call('HEXISTS', KEYS[1], 'pending_event') == 1 then
  return -1
end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
local kept = {'archive', ARGV[4]}
for name, value in pairs(cjson.decode(ARGV[5])) do
  table.insert(kept, name)
  table.insert(kept, value)
end
redis.call('HSET', KEYS[1], unpack(kept))
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
