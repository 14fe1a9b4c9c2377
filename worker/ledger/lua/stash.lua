-- Keeps a webhook that arrived before its submission's job id was recorded; an unsigned one
-- never replaces a signed one.
-- KEYS: job hash. ARGV: the webhook (JSON), '1' if signed.
-- Returns {the job id if one is attached by now (then nothing is stashed) else '', 1 if this
-- webhook was kept and differs from what was, else 0}.
local had = redis.call('HGET', KEYS[1], 'job_id')
if had and had ~= '' then return {had, 0} end
local kept = redis.call('HGET', KEYS[1], 'early_webhook')
if ARGV[2] ~= '1' and kept and cjson.decode(kept)['signed'] then return {'', 0} end
if kept == ARGV[1] then return {'', 0} end
redis.call('HSET', KEYS[1], 'early_webhook', ARGV[1])
return {'', 1}
