-- acquire: take the lock if it is free and nobody is queued; otherwise,
-- in wait mode, join the queue (or refresh this waiter's entry).
--
-- An uncontended Lock through a *redis.Client does not run this script:
-- it sends EXISTS of the queue, SET lock id NX PX ttl and TIME in one
-- pipeline (see lock.go), and calls this script only when that did not
-- take the lock. Through a Cluster or a Ring, where TIME could reach
-- another server than the lock's, it runs this script's fast path.
--
-- Go writes "local TTL, P = <lease ms>, <#prefix>" above this file and
-- splices lib.lua in at the "--@lib" line.
--
-- KEYS[1] lock key   (prefix .. "{" .. tag .. "}")
-- KEYS[2] queue key  (prefix .. "q:{" .. tag .. "}"), same hash slot
-- ARGV[1] the holder id: "<owner>" or "<owner> <label>"
-- ARGV[2] n: tokens wanted
-- wait mode only:
-- ARGV[3] the waiter's queue entry without its deadline: "<owner>
--         <mutex-id> <n> <grant-ms> <verb> <label>" (see lib.lua)
-- ARGV[4] the waiter's current queue member, or ""
-- ARGV[5] that member's score, or ""
-- ARGV[6] liveness: ms a queue entry lives without a refresh
--
-- Returns
--   "<token>"                 the uncontended path of a try: the lock is
--                             the owner's now, for TTL ms, with tokens
--                             from token (the server clock, µs) up to
--                             token + min(n, 1000) - 1
--   {1, first, top, ttl, now} the lock is the owner's (taken now, or
--                             granted or taken earlier: a retried call),
--                             with tokens first..top, for ttl ms more;
--                             now is the server clock (µs)
--   {0, pttl}                 try: another owner holds it (-1: no expiry)
--   {0, pttl, 'foreign'}      try: the lock key holds a string this
--                             library did not write, for pttl ms more
--   {0, pttl, member, score, now}
--                             wait: queued; remember member and score.
--                             now is the server clock (µs): a grant made
--                             later carries a clock >= now, so one whose
--                             clock is below was made before this call
--                             and is dead (this call found the lock not
--                             ours)
-- and an error reply starting with WRONGTYPE if the lock key holds a
-- value of another type without expiry (written by something else).
--
-- The fast path of a try is TIME, EXISTS of the queue and SET ... NX PX;
-- it defines no function and parses nothing.
if #ARGV == 2 then
	local t = redis.call('TIME')
	if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', TTL) then
		local u = t[2]
		return t[1] .. string.sub('00000', #u) .. u
	end
end
--@lib
local L, Q = KEYS[1], KEYS[2]
local id = ARGV[1]
local owner = string.match(id, '^%x+')
local n = tonumber(ARGV[2])
local wait = #ARGV > 2
local us, ms = now()

local function take(first, top)
	redis.call('SET', L, id, 'PX', TTL)
	return {1, first, top, TTL, us}
end

-- general reads the lock, serves a pending queue first, and takes the
-- lock if it is free. It returns the reply, or nil and the value that
-- keeps the caller out.
local function general()
	for round = 1, 2 do
		local v = redis.pcall('GET', L)
		if type(v) == 'table' then
			-- Another type. A lock always has an expiry: without one it
			-- is not ours and would never be freed.
			if redis.call('PTTL', L) == -1 then
				return redis.error_reply('WRONGTYPE lock key ' .. L .. ' holds a non-lock value of another type')
			end
			return nil, v
		end
		local last, pending
		if not v then
			if redis.call('EXISTS', Q) == 0 then
				return take(issue(us - 1, n, us))
			end
			last, pending = us - 1, true
		else
			local o = ownerOf(v)
			if o == owner then
				-- A retried call, or a grant found by a poll: the clock
				-- now issues the tokens (see lib.lua).
				local first, top = issue(us - 1, n, us)
				return {1, first, top, redis.call('PTTL', L), us}
			end
			last, pending = markerLast(v)
			if not last then
				if not o and redis.call('PTTL', L) == -1 then
					-- Not a value of ours, and it would never expire: it
					-- gets the lease TTL and is waited out like a lease.
					redis.call('PEXPIRE', L, TTL)
				end
				return nil, v -- held by another owner
			end
			if not pending then
				return take(issue(last, n, us))
			end
		end
		if round == 2 then
			return nil, v
		end
		promote(last, us, ms)
	end
end

local reply, v = general()
if reply then
	return reply
end

-- Held by another owner (or a queue still being served).
local pttl = redis.call('PTTL', L)
if not wait then
	if type(v) == 'string' and not ownerOf(v) and not markerLast(v) then
		return {0, pttl, 'foreign'} -- not a lock: say so
	end
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
if type(v) == 'string' and ownerOf(v) and not flagged(v) then
	redis.call('SET', L, v .. '*', 'KEEPTTL') -- tell the holder's release
end
return {0, pttl, member, score, us}
