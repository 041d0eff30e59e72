-- renew: extend the lock only if we still own it.
--
-- KEYS[1] lock key
-- ARGV[1] owner  (the lease's random owner id)
-- ARGV[2] ttl    (new lease length in milliseconds)
--
-- Returns 1 if the lock is ours and now expires in ttl ms, 0 if it is
-- not ours any more (the lease was lost).
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
	return 1
end
return 0
