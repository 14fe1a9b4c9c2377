-- Records Apiframe's job id for a submission, once, unless another submission owns that id.
-- KEYS: job hash, index key for the job id. ARGV: job id, now, ref.
-- Returns {attached job id (another one on conflict), stashed webhook, owning ref on conflict}.
local had = redis.call('HGET', KEYS[1], 'job_id')
if had and had ~= '' then return {had, '', ''} end
if not redis.call('HGET', KEYS[1], 'status') then return {'', '', ''} end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[3] then return {'', '', owner} end
redis.call('HSET', KEYS[1], 'job_id', ARGV[1], 'submitted_at', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
local early = redis.call('HGET', KEYS[1], 'early_webhook') or ''
redis.call('HDEL', KEYS[1], 'early_webhook')
return {ARGV[1], early, ''}
