-- acquire: take the lock if it is free and issue fencing tokens.
--
-- KEYS[1] lock key   (prefix .. "{" .. tag .. "}")
-- KEYS[2] fence key  (prefix .. "fence:{" .. tag .. "}")  same hash slot
-- ARGV[1] owner      (random 128-bit hex, one per lease)
-- ARGV[2] ttl        (lease length in milliseconds)
-- ARGV[3] n          (number of fencing tokens to reserve, >= 1)
--
-- Returns {1, first}: the lock is ours and the tokens first..first+n-1
-- are reserved for this lease; or {0, pttl}: another owner holds it for
-- pttl more milliseconds (-1: the key has no expiry). Returns an error
-- reply starting with WRONGTYPE if the lock key holds a non-string
-- without expiry (a key of another type with an expiry is waited out).
--
-- Tokens are microsecond timestamps from the server clock, floored by the
-- last issued token: first = max(last + 1, TIME in us). The fence key
-- expires, so storage does not grow with the number of distinct keys;
-- after it expired (or the server restarted without persistence) the
-- clock floors the next token above every earlier one. Lua numbers are
-- doubles: exact for integers below 2^53, and timestamps in us are ~2^51.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	local t = redis.call('TIME')
	local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
	local first = now
	local prev = redis.call('GET', KEYS[2])
	if prev then
		first = math.max(tonumber(prev) + 1, now)
	end
	local last = first + tonumber(ARGV[3]) - 1
	-- Keep the fence at least until the clock has passed last, so that
	-- after it expires the clock alone is a sufficient floor.
	local keep = math.max(tonumber(ARGV[2]), 1000) + math.ceil((last - now) / 1000)
	redis.call('SET', KEYS[2], string.format('%.0f', last), 'PX', string.format('%.0f', keep))
	return {1, first}
end
-- Held. A lock always has an expiry, so PTTL -1 means the key was written
-- by something else: only then look at its type (a string without expiry
-- is waited on, with the poll bound; any other type is an error, not an
-- endless wait). This keeps a failed attempt at two commands.
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -1 then
	local kind = redis.call('TYPE', KEYS[1])
	if type(kind) == 'table' then
		kind = kind['ok']
	end
	if kind ~= 'string' then
		return redis.error_reply('WRONGTYPE lock key ' .. KEYS[1] .. ' holds a ' .. tostring(kind) .. ', not a lock')
	end
end
return {0, pttl}
