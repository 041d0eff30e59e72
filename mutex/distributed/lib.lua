-- lib: the functions the scripts of protocol v3 share. Go splices this
-- file into acquire.lua and release.lua at their "--@lib" line, after
-- their fast paths, so a call that takes the fast path never runs these
-- definitions. It reads no KEYS or ARGV itself. TTL (the lease length of
-- the calling Mutex, ms) is a constant that Go writes at the top of each
-- script.
--
-- Values of the lock key KEYS[1]:
--   "<owner> <label>"      held by owner (random 128-bit hex, one per
--                          Lock call); label names the holder for
--                          operators (no spaces or '*'; may be empty,
--                          then without its space). The holder's fencing
--                          tokens are not stored: any reading of the
--                          server clock taken while a lock is held lies
--                          between the tokens of the holders before and
--                          after it, so the clock issues them.
--   the same with a trailing "*": the queue may be non-empty
--   "~<last>"              free, but tokens up to last were issued ahead
--                          of the server clock: lives until the clock
--                          has passed last (a few ms at most)
--   "~<last>*"             free, but the queue still has waiters
-- A lock released with nobody waiting is deleted: nothing is left.
--
-- The queue KEYS[2] is a sorted set: score = join time in microseconds
-- (FIFO), member = "<owner> <mutex-id> <n> <grant-ms> <verb> <label>
-- <deadline-ms>": the waiter's owner id, its Mutex (which names its grant
-- channel), the tokens it wants, the TTL of a lock handed to it (its
-- Mutex's), how its Mutex listens ('S': sharded pub/sub, 'P': plain), its
-- label, and the server time after which the entry is dead (its waiter
-- stopped refreshing it).
--
-- Tokens are microseconds of the server clock (TIME), about 2^51: Lua
-- numbers are doubles, exact for integers below 2^53, and %d formats them
-- through a 64-bit integer.

local function fmt(x)
	return string.format('%d', x)
end

-- now returns the server clock in microseconds and in milliseconds.
local function now()
	local t = redis.call('TIME')
	local s, u = tonumber(t[1]), tonumber(t[2])
	return s * 1000000 + u, s * 1000 + (u - u % 1000) / 1000
end

-- owner returns the owner of a held value, or nil.
local function ownerOf(v)
	return string.match(v, '^(%x+) ?[^ *]*%*?$')
end

-- flagged reports whether a value carries the "queue may be non-empty" flag.
local function flagged(v)
	return string.byte(v, -1) == 42 -- '*'
end

-- markerLast returns the last token of a free marker and whether the
-- queue is pending, or nil.
local function markerLast(v)
	if string.byte(v, 1) ~= 126 then -- '~'
		return nil
	end
	local last, pending
	if flagged(v) then
		last, pending = tonumber(string.sub(v, 2, -2)), true
	else
		last, pending = tonumber(string.sub(v, 2)), false
	end
	if not last or last >= 9007199254740992 then
		return nil -- not ours: no token reaches 2^53 (a double's exact range)
	end
	return last, pending
end

-- maxAhead bounds, in microseconds, how far a block of tokens may run
-- ahead of the server clock: a failover or a restart takes far longer, so
-- the clock of the server that takes over has passed every token issued
-- before it (the lone tokens of Lock are the clock itself).
local maxAhead = 1000

-- issue returns the first and top of up to n tokens after last, starting
-- at the clock us at the earliest and reaching at most maxAhead past it.
-- A block shrinks rather than run further ahead; it holds at least one.
local function issue(last, n, us)
	local first = math.max(last + 1, us)
	local top = math.max(first, math.min(first + n - 1, us + maxAhead))
	return first, top
end

-- markerMs is how long a free marker must live after a release at us for
-- tokens up to top: until the clock has passed top; 0 if it has already.
local function markerMs(top, us)
	if top < us then
		return 0
	end
	return math.floor((top - us) / 1000) + 2
end

-- free frees the lock of a holding whose top token is top: deletes
-- it, or leaves a free marker while top is ahead of the clock.
local function free(top, us)
	local ms = markerMs(top, us)
	if ms == 0 then
		redis.call('DEL', KEYS[1])
	else
		redis.call('SET', KEYS[1], '~' .. fmt(top), 'PX', ms)
	end
end

-- entryFields splits a queue member.
local function entryFields(m)
	return string.match(m, '^(%x+) (%S+) (%d+) (%d+) (%a) (%S*) (%d+)$')
end

-- promote hands the free lock to the first live waiter of the queue: it
-- pops entries in FIFO order, skips the dead ones (past their deadline,
-- or whose Mutex no longer listens: the grant reached no subscriber),
-- sets the lock to the waiter with its grant TTL (its first renewal
-- extends it) and publishes the grant on the waiter's Mutex channel:
-- "<owner> <first> <top> <grant-ms> <clock-us>". With the queue empty it
-- frees the lock (see free). It pops at most 64 entries; past that it
-- leaves a pending marker "~last*" and the next script continues. It
-- returns what it left: 'granted' and the grant's expiry (server ms),
-- 'free' and the last token, or 'pending'. Channel names derive from
-- the lock key: prefix .. "grant:{tag}:" .. mutex-id, with P = #prefix.
local function promote(last, us, ms)
	for _ = 1, 64 do
		local head = redis.call('ZPOPMIN', KEYS[2])
		if #head == 0 then
			free(last, us)
			return 'free', last
		end
		local owner, mid, n, gms, verb, label, deadline = entryFields(head[1])
		if owner and tonumber(deadline) >= ms then
			local first, top = issue(last, tonumber(n), us)
			last = top
			local id = owner
			if label ~= '' then
				id = owner .. ' ' .. label
			end
			redis.call('SET', KEYS[1], id .. '*', 'PX', gms)
			-- pcall: a user without channel rights still hands over; the
			-- waiter then learns of its grant at its next poll.
			local channel = string.sub(KEYS[1], 1, P) .. 'grant:' .. string.sub(KEYS[1], P + 1) .. ':' .. mid
			local grant = owner .. ' ' .. fmt(first) .. ' ' .. fmt(top) .. ' ' .. gms .. ' ' .. fmt(us)
			local r = redis.pcall((verb == 'S') and 'SPUBLISH' or 'PUBLISH', channel, grant)
			if type(r) ~= 'number' or r > 0 then
				return 'granted', ms + tonumber(gms)
			end
		end
	end
	redis.call('SET', KEYS[1], '~' .. fmt(last) .. '*', 'PX', TTL)
	return 'pending'
end
