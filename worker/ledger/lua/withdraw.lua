-- Takes a job out of the submit queue before Apiframe has it (a cancel, the submit deadline).
-- KEYS: none. ARGV: the script config, ref.
-- Returns 1 if it was waiting and is no longer, 2 if it is being sent right now, 0 otherwise.
-- uses: queue_place
local c = cjson.decode(ARGV[1])
local ref = ARGV[2]
if redis.call('ZSCORE', c.sending, ref) then return 2 end
local caller = redis.call('HGET', c.job .. ref, 'queue_caller')
if not caller then return 0 end
return unplace(c, caller, ref)
