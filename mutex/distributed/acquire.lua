-- acquire: take the lock if it is free and nobody is queued; otherwise,
-- in wait mode, join the queue (or refresh this waiter's entry).
--
-- KEYS[1] lock key   (prefix .. "{" .. tag .. "}")
-- KEYS[2] queue key  (prefix .. "q:{" .. tag .. "}"), same hash slot
-- ARGV[1]  mode: "try" (never queue) or "wait"
-- ARGV[2]  owner (random 128-bit hex, one per Lock call)
-- ARGV[3]  the waiter's label (no spaces or '*'), or ""
-- ARGV[4]  n: tokens wanted, >= 1
-- ARGV[5]  ttl: lease length, ms
-- ARGV[6]  grant ttl: ms a lock handed to a waiter lives before renewal
-- ARGV[7]  grant channel prefix (prefix .. "grant:{" .. tag .. "}:")
-- ARGV[8]  "1" to publish grants with SPUBLISH, else PUBLISH
-- wait mode only (a try sends no more: every argument costs Redis work):
-- ARGV[9]  the waiter's current queue member, or ""
-- ARGV[10] that member's score, or ""
-- ARGV[11] the waiter's Mutex id (names its grant channel)
-- ARGV[12] liveness: ms a queue entry lives without a refresh
--
-- Returns
--   {1, first, top, ttl}      the lock is the owner's (taken now, or
--                             granted or taken earlier: a retried call),
--                             with tokens first..top, for ttl ms more
--   {0, pttl}                 try: another owner holds it (-1: no expiry)
--   {0, pttl, 'foreign'}      try: the lock key holds a string this
--                             library did not write, for pttl ms more
--   {0, pttl, member, score, now}
--                             wait: queued; remember member and score.
--                             now is the server clock (µs): a grant made
--                             later has a top token >= now, so one whose
--                             top is below was made before this call and
--                             is dead (this call found the lock not ours)
-- and an error reply starting with WRONGTYPE if the lock key holds a
-- value of another type without expiry (written by something else).
--
-- The uncontended Lock is TIME and one SET ... GET, which writes the new
-- holding unconditionally and returns the value it replaced: if that was
-- not free, the script puts it back exactly (same value, same expiry)
-- and goes on as below, all in one atomic script.
local L, Q = KEYS[1], KEYS[2]
local mode, owner, label, n, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local us, ms = now()

local function take(first, top)
	put(owner, first, top, ms + ttl, label, '')
	return {1, first, top, ttl}
end

-- fast is the uncontended path of a one-token acquire. It returns the
-- reply, or nil and the lock key's value (put back) for the general path.
local function fast()
	local exp, t = fmt(ms + ttl), fmt(us)
	local v = owner .. ' ' .. t .. ' ' .. t .. ' ' .. exp
	if label ~= '' then
		v = v .. ' ' .. label
	end
	local old = redis.pcall('SET', L, v, 'PXAT', exp, 'GET')
	if type(old) == 'table' then
		return nil, nil -- another type (nothing was written): see general
	end
	if not old then
		if redis.call('EXISTS', Q) == 0 then
			return {1, us, us, ttl}
		end
		redis.call('DEL', L) -- a grant expired unclaimed: serve the queue
		return nil, false
	end
	local last, pending = markerLast(old)
	if last and not pending then
		-- The clock floors the token; last is below it unless the clock
		-- stepped back.
		if last < us then
			return {1, us, us, ttl}
		end
		return take(last + 1, last + 1)
	end
	if last then
		redis.call('SET', L, old, 'PX', ARGV[5])
		return nil, old
	end
	local o, first, top, e = parse(old)
	if not o then
		-- Not a value of ours (the prefix's keys are the library's). Its
		-- expiry is gone with the overwrite (reading it first would cost
		-- every Lock a command): it gets the lease TTL, and is waited out
		-- like a lock.
		redis.call('SET', L, old, 'PX', ARGV[5])
		return nil, old
	end
	if mode == 'wait' and o ~= owner and not flagged(old) then
		old = old .. '*' -- tell the holder's release that someone waits
	end
	redis.call('SET', L, old, 'PXAT', fmt(e))
	if o == owner then
		return {1, first, top, e - ms}
	end
	return nil, old
end

-- general is every other case: it reads the lock (unless v is known),
-- serves a pending queue first, and takes the lock if it is free.
local function general(v)
	for round = 1, 2 do
		if v == nil then
			v = redis.pcall('GET', L)
			if type(v) == 'table' then
				-- Another type. A lock always has an expiry: without one
				-- it is not ours and would never be freed.
				if redis.call('PTTL', L) == -1 then
					return redis.error_reply('WRONGTYPE lock key ' .. L .. ' holds a non-lock value of another type')
				end
				return nil, v
			end
		end
		if not v then
			if redis.call('EXISTS', Q) == 0 then
				return take(issue(us - 1, n, us))
			end
			if round == 2 then
				return nil, v
			end
			promote(us - 1, us, ms, config(5))
		else
			local o, first, top, e = parse(v)
			if o == owner then
				return {1, first, top, e - ms}
			end
			local last, pending = markerLast(v)
			if not last then
				if not o and redis.call('PTTL', L) == -1 then
					-- Not a value of ours, and it would never expire: it
					-- gets the lease TTL, as on the one-token path.
					redis.call('PEXPIRE', L, ARGV[5])
				end
				return nil, v -- held by another owner
			end
			if not pending then
				return take(issue(last, n, us))
			end
			if round == 2 then
				return nil, v
			end
			promote(last, us, ms, config(5))
		end
		v = nil
	end
end

local reply, v
if n == 1 then
	reply, v = fast()
end
if not reply then
	reply, v = general(v)
end
if reply then
	return reply
end

-- Held by another owner.
local pttl
local o, e = nil, nil
if type(v) == 'string' then
	local po, pf, pt, pe = parse(v)
	o, e = po, pe
end
if o then
	pttl = e - ms
else
	pttl = redis.call('PTTL', L)
end
if mode == 'try' then
	if not o and type(v) == 'string' and not markerLast(v) then
		return {0, pttl, 'foreign'} -- not a lock: say so
	end
	return {0, pttl}
end
local member, score = ARGV[9], ARGV[10]
if member ~= '' and redis.call('ZREM', Q, member) == 0 then
	score = '' -- removed meanwhile (skipped or expired): rejoin at the back
end
if score == '' then
	score = fmt(us)
end
member = entry(owner, ARGV[11], ARGV[4], ms + tonumber(ARGV[12]), label)
redis.call('ZADD', Q, score, member)
redis.call('PEXPIRE', Q, ARGV[12])
if o and not flagged(v) then
	redis.call('SET', L, v .. '*', 'KEEPTTL') -- tell the holder's release
end
return {0, pttl, member, score, us}
