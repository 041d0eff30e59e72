-- acquireall: take, in the order given, the locks of several keys that
-- are free and have nobody queued, up to the first that is not; take
-- nothing from there on. LockAll calls it for keys of one server (of one
-- hash slot in a Cluster), in lock order; the first key it could not take
-- is then locked the usual way (acquire.lua: it queues there, holding the
-- ones before it), and this script is called again for the rest.
--
-- A lock key that exists in any form (held, a free marker, a value this
-- library did not write) or a queue that exists stops the script: those
-- cases are acquire.lua's to handle.
--
-- Go writes "local TTL, P = <lease ms>, <#prefix>" above this file.
--
-- KEYS[2i-1] lock key of the i-th key, KEYS[2i] its queue key
-- ARGV[i]    the holder id of the i-th key: "<owner>" or "<owner> <label>"
--
-- Returns {count, now}: the locks of the first count keys are the
-- caller's now, for TTL ms each; now is the server clock (µs), read
-- while they are held: the fencing token of each.
local count = 0
for i = 1, #ARGV do
	local l, q = KEYS[2 * i - 1], KEYS[2 * i]
	if redis.call('EXISTS', q) == 1 or not redis.call('SET', l, ARGV[i], 'NX', 'PX', TTL) then
		break
	end
	count = i
end
local t = redis.call('TIME')
return {count, tonumber(t[1]) * 1000000 + tonumber(t[2])}
