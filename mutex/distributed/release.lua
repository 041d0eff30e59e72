-- release: free the lock if it is the caller's, handing it to the first
-- live waiter of the queue if there is one; a release with nobody queued
-- publishes nothing.
--
-- KEYS[1] lock key
-- KEYS[2] queue key, same hash slot
-- ARGV[1] mode: "unlock" (ARGV[2] is the lease's "<owner> <first> <top>"),
--         "abort" (ARGV[2] is only the owner: a Lock that gave up
--         releases whatever it may hold), or "requeue" (unlock, then
--         queue a new waiter, ARGV[9..12], at the back of the queue)
-- ARGV[2] the holding, or the owner
-- ARGV[3] top: the last token of the lease (unlock), or ""
-- ARGV[4] ttl: ms the free marker lives
-- ARGV[5] grant ttl, ms
-- ARGV[6] grant channel prefix
-- ARGV[7] "1" to publish with SPUBLISH, else PUBLISH
-- ARGV[8] a queue member to remove first, or "" (or absent)
-- ARGV[9..13] requeue only: the new waiter's owner, its n, its Mutex id,
--         the liveness of its queue entry (ms), and its label
--
-- Returns 1 if the lock was the caller's and is now released or handed
-- on, 0 if it was not (expired or taken over: the lease was lost). A
-- requeue that released returns instead {1, member, score, pttl} (the
-- new waiter is queued behind the holder, whose lease has pttl ms left)
-- or {2, first, top, ttl} (nobody was queued: the new waiter holds the
-- lock at once, with tokens first..top).
--
-- The uncontended unlock is one command: SET lock "~top" XX KEEPTTL GET
-- swaps the holding for the free marker and returns the old value, which
-- is checked after the swap; a value that was not the caller's is put
-- back as it was, with its TTL (kept by KEEPTTL).
if ARGV[8] and ARGV[8] ~= '' then
	redis.call('ZREM', KEYS[2], ARGV[8])
end
local holding, top = ARGV[2], ARGV[3]
if ARGV[1] == 'abort' then
	local v = redis.call('GET', KEYS[1])
	if not v then
		return 0
	end
	local o, first, t = parse(v)
	if o ~= ARGV[2] then
		return 0
	end
	holding, top = o .. ' ' .. fmt(first) .. ' ' .. fmt(t), fmt(t)
end
local old = redis.call('SET', KEYS[1], '~' .. top, 'XX', 'KEEPTTL', 'GET')
if not old then
	return 0
end
if string.sub(old, 1, #holding + 1) == holding .. ' ' then
	if ARGV[1] == 'requeue' then
		local us, ms = now()
		local state, x = 'free', tonumber(top)
		if flagged(old) then
			state, x = promote(tonumber(top), us, ms, config(4))
		end
		local owner, n, live, label = ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[12]), ARGV[13]
		if state == 'free' then
			local first, t = issue(x, n, us)
			put(owner, first, t, ms + tonumber(ARGV[4]), label, '')
			return {2, first, t, tonumber(ARGV[4])}
		end
		local score = fmt(us)
		local member = entry(owner, ARGV[11], ARGV[10], ms + live, label)
		redis.call('ZADD', KEYS[2], score, member)
		redis.call('PEXPIRE', KEYS[2], live)
		local pttl = -1
		if state == 'granted' then
			pttl = x - ms
		end
		return {1, member, score, pttl}
	end
	if flagged(old) then
		local us, ms = now()
		promote(tonumber(top), us, ms, config(4))
	end
	return 1
end
if old == '~' .. top then
	return 1 -- a retry of this release, which already ran
end
redis.call('SET', KEYS[1], old, 'KEEPTTL')
return 0
