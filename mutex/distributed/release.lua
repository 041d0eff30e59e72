-- release: delete the lock only if we still own it, then announce it.
--
-- KEYS[1] lock key
-- ARGV[1] owner    (the lease's random owner id)
-- ARGV[2] channel  (prefix .. "release:{" .. tag .. "}"), same hash slot
-- ARGV[3] "1" to announce with SPUBLISH (sharded pub/sub), else PUBLISH
--
-- Returns 1 if the lock was ours and is now released, 0 if it was not
-- ours any more (expired or taken over: the lease was lost).
--
-- The notice is published with pcall: a user without channel permission
-- (possible with spin waiting, which needs no Pub/Sub) still releases;
-- Pub/Sub waiters then fall back to their poll bound.
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('DEL', KEYS[1])
	if ARGV[3] == '1' then
		redis.pcall('SPUBLISH', ARGV[2], '')
	else
		redis.pcall('PUBLISH', ARGV[2], '')
	end
	return 1
end
return 0
