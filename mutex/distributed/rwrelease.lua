-- rwrelease: end a reader's share or a writer's holding of an RWMutex's
-- lock, and hand the lock on if that freed it: to the next writer, or to
-- the whole run of readers at the head of the queue (see rwlib.lua's
-- serve). A release with nobody queued publishes nothing and leaves
-- nothing.
--
-- Go writes "local TTL, P = <lease ms>, <#prefix>" above this file and
-- splices lib.lua and rwlib.lua in at the "--@lib" line.
--
-- KEYS[1] writer key, KEYS[2] queue, KEYS[3] readers (one hash slot)
-- ARGV as release.lua's:
-- ARGV[1] the holder id "<owner>" or "<owner> <label>" (unlock,
--         requeue), or the owner alone (abort: a Lock that gave up
--         releases whatever it may hold)
-- then either nothing or the lease's top token alone (unlock), or:
-- ARGV[2] "a" (abort) or "r" (requeue, a writer only: unlock, then
--         queue a new writer at the back of the queue)
-- ARGV[3] a queue member to remove first, or ""
-- ARGV[4] requeue, and abort by an operator (ForceReleaseRW): the
--         lease's top token, or ""; absent for a Lock that gave up
-- ARGV[5..8] requeue only: the new writer's id, its n, its queue entry
--         without deadline and its liveness (ms), as release.lua's
--
-- Returns 1 if the caller held the lock (as reader or writer) and no
-- longer does, 0 if another writer holds it (the lease was lost), 2 if
-- the caller holds nothing (expired, or released by an earlier try of
-- this same call). A requeue that released returns instead {1, member,
-- score, pttl} (the new writer is queued; pttl: the holder's remaining
-- TTL, or the first reader's, -1 if none) or {2, first, top, ttl, now}
-- (nobody held or queued: the new writer holds the lock at once).
--
-- The uncontended releases: a reader's is a ZREM and an EXISTS; a
-- writer's a ZREM, a GET, a DEL and an EXISTS (and a TIME, with a top
-- token, to check that it is behind the clock).
local done = false
if #ARGV <= 2 then
	if redis.call('ZREM', KEYS[3], string.match(ARGV[1], '^%x+')) == 1 then
		done = true
	elseif redis.call('GET', KEYS[1]) == ARGV[1] then
		local t = ARGV[2] and redis.call('TIME')
		if not t or tonumber(ARGV[2]) < t[1] * 1000000 + t[2] then
			redis.call('DEL', KEYS[1])
			done = true
		end
	end
	if done and redis.call('EXISTS', KEYS[2]) == 0 then
		return 1
	end
end
--@lib
local owner = string.match(ARGV[1], '^%x+')
local abort, requeue = ARGV[2] == 'a', ARGV[2] == 'r'
local top
if abort or requeue then
	if ARGV[3] ~= '' then
		redis.call('ZREM', Q, ARGV[3])
	end
	top = ARGV[4]
else
	top = ARGV[2]
end
local us, ms = now()
local result = 1
if not done then
	local v = redis.call('GET', W)
	if v and (v == ARGV[1] or (abort and ownerOf(v) == owner)) then
		free(tonumber(top or '') or (us - 1), us)
	elseif requeue or redis.call('ZREM', R, owner) == 0 then
		if top and top ~= '' and v == '~' .. top then
			result = 1 -- a retry of this release, which already ran
		elseif v and not markerLast(v) then
			result = 0 -- another writer holds it
		else
			result = 2
		end
		if requeue then
			return result
		end
	end
end
local nreaders = pruneReaders(ms)
local wv, floor, marked = writerOf(us)
if not wv and redis.call('EXISTS', Q) == 1 then
	local s = serve(floor, marked, us, ms, nreaders)
	if s == 'writer' then
		wv = redis.call('GET', W)
	else
		nreaders = s
	end
end
if not requeue then
	return result
end

-- Requeue: a new writer of the same RWMutex takes the lock at once if
-- the release left it free with nobody queued, else queues at the back.
local id, n, base, live = ARGV[5], tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8])
if not wv and nreaders == 0 and redis.call('EXISTS', Q) == 0 then
	local first, last = writeBlock(floor, marked, n, us)
	redis.call('SET', W, id, 'PX', TTL)
	return {2, first, last, TTL, us}
end
local score = fmt(us)
local member = base .. ' ' .. fmt(ms + live)
redis.call('ZADD', Q, score, member)
redis.call('PEXPIRE', Q, live)
local pttl
if wv then
	pttl = redis.call('PTTL', W)
else
	pttl = earliest(ms)
end
return {1, member, score, pttl}
