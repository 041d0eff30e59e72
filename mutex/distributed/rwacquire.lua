-- rwacquire: take an RWMutex's lock for a reader (n = 0) or a writer
-- (n >= 1 tokens) if it can be granted now; otherwise, in wait mode,
-- join the queue (or refresh this waiter's entry). The keys and values
-- are in rwlib.lua.
--
-- Go writes "local TTL, P = <lease ms>, <#prefix>" above this file and
-- splices lib.lua and rwlib.lua in at the "--@lib" line.
--
-- KEYS[1] writer key, KEYS[2] queue, KEYS[3] readers (one hash slot)
-- ARGV[1] the holder id: "<owner>" or "<owner> <label>"
-- ARGV[2] n: 0 for a reader, else the tokens a writer wants
-- wait mode only, as acquire.lua's:
-- ARGV[3] the waiter's queue entry without its deadline
-- ARGV[4] the waiter's current queue member, or ""
-- ARGV[5] that member's score, or ""
-- ARGV[6] liveness: ms a queue entry lives without a refresh
--
-- Returns what acquire.lua returns, except the bare token of its fast
-- path: {1, first, top, ttl, now} held (a reader's first = top),
-- {0, pttl} a try that is refused, {0, pttl, member, score, now} queued.
-- pttl is the writer's remaining TTL, or the time until the first
-- reader's share expires.
--
-- A reader is admitted at once if no writer holds and nobody queues; a
-- writer if nobody holds and nobody queues. Anything else goes the long
-- way, which serves the queue first.
local read = ARGV[2] == '0'
if #ARGV == 2 and redis.call('EXISTS', KEYS[2]) == 0 then
	local t = redis.call('TIME')
	local us = t[1] * 1000000 + t[2]
	if read then
		if redis.call('EXISTS', KEYS[1]) == 0 then
			local ms = t[1] * 1000 + (t[2] - t[2] % 1000) / 1000
			redis.call('ZADD', KEYS[3], ms + TTL, string.match(ARGV[1], '^%x+'))
			if redis.call('PTTL', KEYS[3]) < TTL then
				redis.call('PEXPIRE', KEYS[3], TTL)
			end
			return {1, us, us, TTL, us}
		end
	elseif redis.call('EXISTS', KEYS[1], KEYS[3]) == 0 then
		redis.call('SET', KEYS[1], ARGV[1], 'PX', TTL)
		return {1, us, us + math.min(tonumber(ARGV[2]), 1000) - 1, TTL, us}
	end
end
--@lib
local id = ARGV[1]
local owner = string.match(id, '^%x+')
local n = tonumber(ARGV[2])
local wait = #ARGV > 2
local us, ms = now()

-- mine returns the reply if owner holds the lock already (a retried
-- call, or a grant found by a poll), else nil.
local function mine(wv, floor)
	if read then
		local s = redis.call('ZSCORE', R, owner)
		if s and tonumber(s) > ms then
			local tok = readTok(floor, us)
			return {1, tok, tok, math.max(tonumber(s) - ms, 1), us}
		end
	elseif wv and ownerOf(wv) == owner then
		local first, top = issue(us - 1, n, us)
		return {1, first, top, redis.call('PTTL', W), us}
	end
	return nil
end

local wv, floor, marked = writerOf(us)
local nreaders = 0
if not wv then
	nreaders = pruneReaders(ms) -- no reader holds beside a writer
end
local reply = mine(wv, floor)
if reply then
	return reply
end
if not wv and redis.call('EXISTS', Q) == 1 then
	-- Served before this caller: a queue left behind a lock that
	-- expired, dead heads, readers that a cancelled writer held back.
	local s = serve(floor, marked, us, ms, nreaders)
	if s == 'writer' then
		wv = redis.call('GET', W)
	else
		nreaders = s
	end
	reply = mine(wv, floor)
	if reply then
		return reply
	end
end

if not wv and redis.call('EXISTS', Q) == 0 then
	if read then
		addReader(owner, ms, TTL)
		local tok = readTok(floor, us)
		return {1, tok, tok, TTL, us}
	elseif nreaders == 0 then
		local first, top = writeBlock(floor, marked, n, us)
		redis.call('SET', W, id, 'PX', TTL)
		return {1, first, top, TTL, us}
	end
end

-- Held (or queued for) by others.
local pttl
if wv then
	pttl = redis.call('PTTL', W)
	if not ownerOf(wv) and pttl == -1 then
		-- Not a value of ours, and it would never expire: it gets the
		-- lease TTL and is waited out like a lease.
		redis.call('PEXPIRE', W, TTL)
		pttl = TTL
	end
else
	pttl = earliest(ms)
	if pttl < 0 then
		pttl = 0 -- a queue still being served: look again soon
	end
end
if not wait then
	return {0, pttl}
end
local member, score = ARGV[4], ARGV[5]
if member ~= '' and redis.call('ZREM', Q, member) == 0 then
	score = '' -- removed meanwhile (skipped or expired): rejoin at the back
end
if score == '' then
	score = fmt(us)
end
member = ARGV[3] .. ' ' .. fmt(ms + tonumber(ARGV[6]))
redis.call('ZADD', Q, score, member)
redis.call('PEXPIRE', Q, ARGV[6])
return {0, pttl, member, score, us}
