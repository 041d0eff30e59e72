-- lib: the functions the scripts of protocol v2 share. Go prepends this
-- file to acquire.lua, release.lua and renew.lua; it reads no KEYS or
-- ARGV itself.
--
-- Values of the lock key KEYS[1]:
--   "<owner> <first> <top> <exp> <label>"   held by owner, with tokens
--                          first..top; exp is its expiry (server ms), kept
--                          equal to the key's own, so that a script that
--                          overwrote it can put it back exactly; label
--                          names the holder for operators (no spaces or
--                          '*'; may be empty, then without its space)
--   the same with a trailing "*": the queue may be non-empty
--   "~<last>"                       free; last is the highest token issued
--   "~<last>*"                      free, but the queue still has waiters
-- The queue KEYS[2] is a sorted set: score = join time in microseconds
-- (FIFO), member = "<owner> <mutex-id> <n> <deadline-ms> <label>", where
-- deadline is the server time after which the entry is dead (its waiter
-- stopped refreshing it).
--
-- Tokens are microseconds of the server clock (TIME), about 2^51: Lua
-- numbers are doubles, exact for integers below 2^53, and %d formats them
-- through a 64-bit integer (cheaper than %.0f, which is a float path).

local function fmt(x)
	return string.format('%d', x)
end

-- now returns the server clock in microseconds and in milliseconds.
local function now()
	local t = redis.call('TIME')
	local s, u = tonumber(t[1]), tonumber(t[2])
	return s * 1000000 + u, s * 1000 + (u - u % 1000) / 1000
end

-- parse returns the owner, first, top, exp and label of a held value,
-- or nil.
local function parse(v)
	local o, f, t, e, label = string.match(v, '^(%x+) (%d+) (%d+) (%d+) ?([^ *]*)%*?$')
	if o then
		return o, tonumber(f), tonumber(t), tonumber(e), label
	end
end

-- flagged reports whether a value carries the "queue may be non-empty" flag.
local function flagged(v)
	return string.byte(v, -1) == 42 -- '*'
end

-- markerLast returns the last token of a free marker and whether the
-- queue is pending, or nil. (Byte tests, not a pattern: it is on the
-- path of every uncontended Lock.)
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

-- maxPast bounds, in microseconds, how far a block of tokens may reach
-- into the clock's past: a failover or a restart takes far longer, so no
-- block can hold a token issued before one (that a stale replica or a
-- snapshot does not know of).
local maxPast = 1000

-- issue returns the first and top of up to n tokens after last, none
-- ahead of the clock us: tokens never run ahead of the server clock, so
-- the clock alone (after a restart without persistence, a failover, or
-- once the marker has expired) is a floor above every token issued
-- before. A block shrinks rather than overrun; it holds at least one.
local function issue(last, n, us)
	local first = math.max(last + 1, us - math.min(n, maxPast) + 1)
	local top = math.max(first, math.min(first + n - 1, us))
	return first, top
end

-- holding is the lock key's value for owner's holding of first..top
-- until exp (server ms), labelled label.
local function holding(owner, first, top, exp, label)
	local v = owner .. ' ' .. fmt(first) .. ' ' .. fmt(top) .. ' ' .. fmt(exp)
	if label ~= '' then
		v = v .. ' ' .. label
	end
	return v
end

-- put sets the lock key to owner's holding until exp, flagged by star.
local function put(owner, first, top, exp, label, star)
	redis.call('SET', KEYS[1], holding(owner, first, top, exp, label) .. star, 'PXAT', fmt(exp))
end

-- entry is a queue member.
local function entry(owner, mid, n, deadline, label)
	return owner .. ' ' .. mid .. ' ' .. n .. ' ' .. fmt(deadline) .. ' ' .. label
end

-- config returns what promote needs to know, from the ARGV at index i:
-- the lease TTL, the grant TTL, the grant channel prefix and the publish
-- flag, in that order.
local function config(i)
	return {
		ttl = ARGV[i],
		grant = ARGV[i + 1],
		channel = ARGV[i + 2],
		publish = (ARGV[i + 3] == '1') and 'SPUBLISH' or 'PUBLISH',
	}
end

-- promote hands the free lock to the first live waiter of the queue: it
-- pops entries in FIFO order, skips the dead ones (past their deadline,
-- or whose Mutex no longer listens: the grant reached no subscriber),
-- sets the lock to the waiter with a short TTL (cfg.grant ms; the new
-- holder's first renewal extends it) and publishes the grant on the
-- waiter's Mutex channel: "<owner> <first> <top> <grant-ttl>". With the
-- queue empty it leaves a free marker (cfg.ttl ms). It pops at most 64
-- entries; past that it leaves a pending marker "~last*" and the next
-- script continues. It returns what it left: 'granted' and the grant's
-- expiry, 'free' and the last token, or 'pending'.
local function promote(last, us, ms, cfg)
	for _ = 1, 64 do
		local head = redis.call('ZPOPMIN', KEYS[2])
		if #head == 0 then
			redis.call('SET', KEYS[1], '~' .. fmt(last), 'PX', cfg.ttl)
			return 'free', last
		end
		local owner, mid, n, deadline, label = string.match(head[1], '^(%x+) (%S+) (%d+) (%d+) ?(%S*)$')
		if owner and tonumber(deadline) >= ms then
			local first, top = issue(last, tonumber(n), us)
			last = top
			put(owner, first, top, ms + tonumber(cfg.grant), label, '*')
			-- pcall: a user without channel rights still hands over; the
			-- waiter then learns of its grant at its next poll.
			local grant = owner .. ' ' .. fmt(first) .. ' ' .. fmt(top) .. ' ' .. cfg.grant
			local r = redis.pcall(cfg.publish, cfg.channel .. mid, grant)
			if type(r) ~= 'number' or r > 0 then
				return 'granted', ms + tonumber(cfg.grant)
			end
		end
	end
	redis.call('SET', KEYS[1], '~' .. fmt(last) .. '*', 'PX', cfg.ttl)
	return 'pending'
end
