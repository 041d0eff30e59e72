-- renew: extend the lock only if it is still the lease's.
--
-- Go writes "local TTL, P = <lease ms>, <#prefix>" above this file.
--
-- KEYS[1] lock key
-- ARGV[1] the holder id "<owner>" or "<owner> <label>"
--
-- Returns 1 if the lock is the lease's and now expires in TTL ms, 0 if
-- it is not (the lease was lost). The waiters flag stays.
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] or v == ARGV[1] .. '*' then
	redis.call('PEXPIRE', KEYS[1], TTL)
	return 1
end
return 0
