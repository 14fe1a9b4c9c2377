-- The record that holds an Apiframe job id, read in one call.
-- KEYS: none (the config names them). ARGV: the script config, the job id.
-- Returns {ref, the record's fields, its objects}, or {} if no record holds the job id.
local c = cjson.decode(ARGV[1])
local ref = redis.call('GET', c.job_id .. ARGV[2])
if not ref then return {} end
return {ref, redis.call('HGETALL', c.job .. ref), redis.call('HGETALL', c.objects .. ref)}
