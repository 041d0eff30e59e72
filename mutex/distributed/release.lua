-- release: free the lock if it is the caller's, handing it to the first
-- live waiter of the queue if there is one; a release with nobody queued
-- publishes nothing and, for a lease whose tokens are behind the server
-- clock, leaves nothing.
--
-- Go writes "local TTL, P = <lease ms>, <#prefix>" above this file and
-- splices lib.lua in at the "--@lib" line.
--
-- KEYS[1] lock key
-- KEYS[2] queue key, same hash slot
-- ARGV[1] the holder id "<owner>" or "<owner> <label>" (unlock,
--         requeue), or the owner alone (abort: a Lock that gave up
--         releases whatever it may hold)
-- and then either nothing (unlock of a lease whose tokens are behind the
-- server clock), or its top token alone (unlock of a lease whose tokens
-- may be ahead of it), or:
-- ARGV[2] mode: "u" (unlock), "a" (abort) or "r" (requeue: unlock, then
--         queue a new waiter at the back of the queue)
-- ARGV[3] a queue member to remove first, or ""
-- ARGV[4] the lease's top token, or ""
-- ARGV[5..8] requeue only: the new waiter's id, its n, its queue entry
--         without deadline (as acquire's ARGV[3]) and its liveness (ms)
--
-- Returns 1 if the lock was the caller's and is now released or handed
-- on, 0 if it was not (taken over: the lease was lost), 2 if the key is
-- absent (expired or removed, or released by an earlier try of this same
-- call). A requeue that released returns instead {1, member, score,
-- pttl} (the new waiter is queued behind the holder, whose lease has
-- pttl ms left) or {2, first, top, ttl, now} (nobody was queued: the new
-- waiter holds the lock at once, with tokens first..top).
--
-- The uncontended unlock is a GET and a DEL (and a TIME, with a top
-- token, to check that it is behind the clock).
if #ARGV <= 2 then
	local v = redis.call('GET', KEYS[1])
	if v == ARGV[1] then
		local t = ARGV[2] and redis.call('TIME')
		if not t or tonumber(ARGV[2]) < t[1] * 1000000 + t[2] then
			redis.call('DEL', KEYS[1])
			return 1
		end
	end
end
--@lib
local mode, top = 'u', ARGV[2]
if #ARGV > 2 then
	mode, top = ARGV[2], ARGV[4]
	if ARGV[3] ~= '' then
		redis.call('ZREM', KEYS[2], ARGV[3])
	end
end
local v = redis.call('GET', KEYS[1])
if not v then
	return 2
end
local us, ms = now()
top = tonumber(top or '') or (us - 1)
if mode == 'a' then
	if ownerOf(v) ~= ARGV[1] then
		return 0
	end
elseif v ~= ARGV[1] and v ~= ARGV[1] .. '*' then
	if v == '~' .. fmt(top) then
		return 1 -- a retry of this release, which already ran
	end
	return 0
end
if mode == 'r' then
	local state, x = 'free', top
	if flagged(v) then
		state, x = promote(top, us, ms)
	end
	local id, n, base, live = ARGV[5], tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8])
	if state == 'free' then
		local f, t = issue(x, n, us)
		redis.call('SET', KEYS[1], id, 'PX', TTL)
		return {2, f, t, TTL, us}
	end
	local score = fmt(us)
	local member = base .. ' ' .. fmt(ms + live)
	redis.call('ZADD', KEYS[2], score, member)
	redis.call('PEXPIRE', KEYS[2], live)
	local pttl = -1
	if state == 'granted' then
		pttl = x - ms
	end
	return {1, member, score, pttl}
end
if flagged(v) then
	promote(top, us, ms)
else
	free(top, us)
end
return 1
