-- Records a stored object; a job that has already ended (and so expires) takes it along.
-- KEYS: objects hash, job hash. ARGV: index, the object (JSON).
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('TTL', KEYS[2])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
