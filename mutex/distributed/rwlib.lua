-- rwlib: the functions the scripts of an RWMutex share. Go splices
-- lib.lua and then this file into rwacquire.lua and rwrelease.lua at
-- their "--@lib" line, after their fast paths. TTL and P are constants
-- that Go writes at the top of each script, as for the Mutex's scripts.
--
-- The names of one key (one hash tag, so one Cluster slot):
--   KEYS[1] the writer key, prefix .. "rw:{tag}", a string:
--     "<owner> <label>"  held by a writer (as a Mutex's lock key)
--     "~<last>"          no writer; a writer's block of tokens up to
--                        last ran ahead of the server clock: lives until
--                        the clock has passed last (a few ms at most)
--   KEYS[2] the queue, prefix .. "rwq:{tag}", a sorted set as a Mutex's
--     (lib.lua), whose entries have n = 0 for a reader
--   KEYS[3] the readers, prefix .. "rwr:{tag}", a sorted set: member =
--     a reader's owner id, score = the server time (ms) at which its
--     share expires unless renewed. An expired member is removed by the
--     next script that looks; the key itself expires with the last share.
--
-- Tokens. No token is stored: as for the Mutex, the server clock (µs)
-- issues them while the lock is held, a writer's read while it holds
-- alone, a reader's while no writer holds. Under a free marker "~last",
-- a reader's token is at least last+1 and a writer's at least last+2,
-- so a writer after readers is above them too.

local W, Q, R = KEYS[1], KEYS[2], KEYS[3]

-- writerOf reads the writer key: the writer's value (nil if none), and
-- the floor of new tokens with whether a marker set it.
local function writerOf(us)
	local v = redis.call('GET', W)
	if not v then
		return nil, us - 1, false
	end
	local last = markerLast(v)
	if last then
		return nil, last, true
	end
	return v, us - 1, false
end

-- readTok is the token of a reader admitted now.
local function readTok(floor, us)
	return math.max(floor + 1, us)
end

-- writeBlock is the first and top token of a writer admitted now.
local function writeBlock(floor, marked, n, us)
	if marked then
		floor = floor + 1
	end
	return issue(floor, n, us)
end

-- pruneReaders removes the expired shares; it returns how many live.
local function pruneReaders(ms)
	redis.call('ZREMRANGEBYSCORE', R, '-inf', ms)
	return redis.call('ZCARD', R)
end

-- addReader records a share of owner until ms + d, and keeps the
-- readers key alive at least that long.
local function addReader(owner, ms, d)
	redis.call('ZADD', R, ms + d, owner)
	if redis.call('PTTL', R) < d then
		redis.call('PEXPIRE', R, d)
	end
end

-- channelOf is the grant channel of Mutex mid: prefix .. "rwgrant:{tag}:" .. mid.
local function channelOf(mid)
	return string.sub(W, 1, P) .. 'rwgrant:' .. string.sub(W, P + 4) .. ':' .. mid
end

-- serve hands the lock, which no writer holds, to the head of the queue:
-- the run of live readers at its head (joining the nreaders that hold),
-- or, if no reader holds, the first live writer. Dead entries (past
-- their deadline, or whose Mutex no longer listens: the grant reached no
-- subscriber) are skipped. Each Mutex with readers in the run gets ONE
-- grant message, "<owner>,<owner>,... <tok> <tok> <grant-ms> <clock>",
-- whatever the number of its readers; a writer gets "<owner> <first>
-- <top> <grant-ms> <clock>" as from a Mutex. It looks at 64 entries at
-- most; the next script goes on. It returns 'writer' if it granted a
-- writer, else the number of readers that hold.
local function serve(floor, marked, us, ms, nreaders)
	local tok = readTok(floor, us)
	local groups, order = {}, {}
	local function flush()
		for _, mid in ipairs(order) do
			local g = groups[mid]
			local msg = table.concat(g.owners, ',') .. ' ' .. fmt(tok) .. ' ' .. fmt(tok) .. ' ' .. g.gms .. ' ' .. fmt(us)
			-- pcall: a user without channel rights still hands over; the
			-- readers then learn of their grant at their next poll.
			local r = redis.pcall((g.verb == 'S') and 'SPUBLISH' or 'PUBLISH', channelOf(mid), msg)
			if type(r) ~= 'number' or r > 0 then
				for _, o in ipairs(g.owners) do
					addReader(o, ms, tonumber(g.gms))
				end
				nreaders = nreaders + #g.owners
			end
		end
		groups, order = {}, {}
	end
	for _ = 1, 64 do
		local head = redis.call('ZRANGE', Q, 0, 0)
		if #head == 0 then
			break
		end
		local owner, mid, n, gms, verb, label, deadline = entryFields(head[1])
		if not owner or tonumber(deadline) < ms then
			redis.call('ZREM', Q, head[1])
		elseif n == '0' then
			redis.call('ZREM', Q, head[1])
			local g = groups[mid]
			if not g then
				g = {owners = {}, gms = gms, verb = verb}
				groups[mid] = g
				order[#order + 1] = mid
			end
			g.owners[#g.owners + 1] = owner
		else
			flush()
			if nreaders > 0 then
				break
			end
			redis.call('ZREM', Q, head[1])
			local first, top = writeBlock(floor, marked, tonumber(n), us)
			local id = owner
			if label ~= '' then
				id = owner .. ' ' .. label
			end
			local grant = owner .. ' ' .. fmt(first) .. ' ' .. fmt(top) .. ' ' .. gms .. ' ' .. fmt(us)
			local r = redis.pcall((verb == 'S') and 'SPUBLISH' or 'PUBLISH', channelOf(mid), grant)
			if type(r) ~= 'number' or r > 0 then
				redis.call('SET', W, id, 'PX', gms)
				return 'writer'
			end
		end
	end
	flush()
	return nreaders
end

-- earliest is the time (ms) until the first share of the readers
-- expires, -1 if none holds.
local function earliest(ms)
	local r = redis.call('ZRANGE', R, 0, 0, 'WITHSCORES')
	if #r == 0 then
		return -1
	end
	return math.max(tonumber(r[2]) - ms, 0)
end
