-- renew: extend the lock only if it is still the lease's.
--
-- KEYS[1] lock key
-- ARGV[1] the lease's holding "<owner> <first> <top>"
-- ARGV[2] ttl: new lease length, ms
--
-- Returns 1 if the lock is the lease's and now expires in ttl ms, 0 if
-- it is not (the lease was lost). The expiry kept in the value moves
-- with the key's; the label and the waiters flag stay.
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
	return 0
end
local _, ms = now()
local exp = ms + tonumber(ARGV[2])
local rest = string.match(v, '^%S+ %d+ %d+ %d+(.*)$') -- the label and flag
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. fmt(exp) .. rest, 'PXAT', fmt(exp))
return 1
