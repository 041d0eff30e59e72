-- rwrenew: extend a writer's holding or a reader's share of an RWMutex's
-- lock, only if it is still the lease's.
--
-- Go writes "local TTL, P = <lease ms>, <#prefix>" above this file.
--
-- KEYS[1] writer key, KEYS[2] readers (one hash slot)
-- ARGV[1] the holder id "<owner>" or "<owner> <label>"
--
-- Returns 1 if the lease holds and now expires in TTL ms, 0 if not (it
-- was lost: expired, or taken over).
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('PEXPIRE', KEYS[1], TTL)
	return 1
end
local owner = string.match(ARGV[1], '^%x+')
local s = redis.call('ZSCORE', KEYS[2], owner)
if not s then
	return 0
end
local t = redis.call('TIME')
local ms = t[1] * 1000 + (t[2] - t[2] % 1000) / 1000
if tonumber(s) <= ms then
	redis.call('ZREM', KEYS[2], owner)
	return 0
end
redis.call('ZADD', KEYS[2], ms + TTL, owner)
if redis.call('PTTL', KEYS[2]) < TTL then
	redis.call('PEXPIRE', KEYS[2], TTL)
end
return 1
