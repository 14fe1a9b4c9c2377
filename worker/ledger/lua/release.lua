-- Gives a lease up, if it is still the caller's: one that lapsed and was taken by another stays.
-- KEYS: the lease. ARGV: the caller's token. Returns 1 if released, 0 if not the caller's.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
