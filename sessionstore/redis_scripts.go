package sessionstore

import "github.com/redis/rueidis"

// The Redis backend writes through Lua scripts so that reading the current
// binding, deciding, writing the new one and keeping the per-upstream
// indexes in step is one atomic step on the server: two LB nodes rebinding
// one session at once cannot both win, and Counts never sees a binding in
// two upstreams' sets.
//
// Keys, under the configured prefix P:
//
//	P b:<key>        string "<expires unix ms>|<upstream>" (EncodeBinding), PX = remaining TTL
//	P u:<upstream>   sorted set: member <key>, score = expiry in Redis's clock (ms)
//	P upstreams      set of upstream names that have (or had) a sorted set
//	P drain          set of draining upstreams
//	P d:<key>        tombstone of a deleted binding: unix ms of the deletion
//	P epoch          a random token; a change tells the nodes the data was lost
//
// On a Redis Cluster, P is followed by a group's hash tag ({0} to {63},
// see keyLayout) in every key but drain, so that a script's keys share a
// slot.
//
// The per-upstream sorted sets and tombstones are named by the scripts
// rather than passed as KEYS; Redis Cluster runs such a script because
// they carry the binding's hash tag, so they live in its slot.
//
// Scores use the Redis server's clock (TIME), the same clock that expires
// the binding keys, so a binding leaves its upstream's count exactly when
// its key expires, whatever the LB nodes' clocks say.
//
// Script arguments, shared by the binding scripts:
//
//	KEYS[1] binding key        ARGV[1] key prefix    ARGV[2] session key (set member)
//	KEYS[2] upstream-name set  ARGV[3] new value     ARGV[4] TTL in ms
//	                           ARGV[5] new upstream  ARGV[6] swap: the upstream to replace

// luaCurrent reads the binding in force into cur and its upstream into
// curUpstream (both false when there is none). A value that does not parse
// counts as no binding, so a bad write cannot wedge a session.
const luaCurrent = `
local cur = redis.call('GET', KEYS[1])
local curUpstream = false
if cur then
  local up = string.match(cur, '^%d+|(.+)$')
  if up then curUpstream = up else cur = false end
end
`

// luaBind stores the new binding and moves the session between the
// upstreams' sorted sets. It also drops the target set's expired members
// (each member is removed once, so the cost is amortized over writes) and
// keeps the set's own expiry at least as late as its latest member, so a set
// nobody writes to or counts any more disappears by itself.
const luaBind = `
local ttl = tonumber(ARGV[4])
redis.call('SET', KEYS[1], ARGV[3], 'PX', ttl)
if curUpstream and curUpstream ~= ARGV[5] then
  redis.call('ZREM', ARGV[1] .. 'u:' .. curUpstream, ARGV[2])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local set = ARGV[1] .. 'u:' .. ARGV[5]
redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
redis.call('ZADD', set, now + ttl, ARGV[2])
if redis.call('PTTL', set) < ttl then
  redis.call('PEXPIRE', set, ttl)
end
redis.call('SADD', KEYS[2], ARGV[5])
return {1, ARGV[3]}
`

var (
	// redisAddScript binds unless a binding is in force; it answers
	// {1, new value} or {0, current value}.
	redisAddScript = rueidis.NewLuaScript(luaCurrent + `
if cur then return {0, cur} end
` + luaBind)

	// redisSwapScript binds if no binding is in force or the one in force
	// points at ARGV[6]; it answers like redisAddScript.
	redisSwapScript = rueidis.NewLuaScript(luaCurrent + `
if cur and curUpstream ~= ARGV[6] then return {0, cur} end
` + luaBind)

	// redisPutScript binds unconditionally.
	redisPutScript = rueidis.NewLuaScript(luaCurrent + luaBind)

	// redisDeleteScript removes the binding and its sorted-set member, and
	// leaves a tombstone P d:<key> holding the deletion's time in the
	// server's clock (unix ms), for at least ARGV[3] ms and as long as the
	// binding had left (ARGV[4] is the deleting node's unix ms, the clock
	// of the binding's expiry), at most 30 days, so that no node writes
	// back a copy it made before (see redisReplayScript).
	redisDeleteScript = rueidis.NewLuaScript(luaCurrent + `
local keep = tonumber(ARGV[3])
if cur then
  local left = (tonumber(string.match(cur, '^(%d+)|')) or 0) - tonumber(ARGV[4])
  if left > keep then keep = math.min(left, 2592000000) end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', ARGV[1] .. 'd:' .. ARGV[2], now, 'PX', keep)
if curUpstream then
  redis.call('ZREM', ARGV[1] .. 'u:' .. curUpstream, ARGV[2])
end
redis.call('DEL', KEYS[1])
return 1
`)

	// redisReplayScript writes back a binding a node kept (a write that
	// failed, or a store refilled after it lost its data) without undoing
	// a newer decision. ARGV[7] is when the node made or saw the binding,
	// in the server's clock (unix ms: the node's time plus the offset it
	// measured to the server), ARGV[8] "add" or "put". It answers like the
	// binding scripts: {1, new value}, {0, current value}, or {0, false}
	// for a session deleted since. It writes nothing when the
	// session was deleted at or after ARGV[7] (its tombstone says when);
	// in add mode, when any binding is in force; in put mode, when the one
	// in force expires no earlier than this one (it was written later).
	redisReplayScript = rueidis.NewLuaScript(`
local tomb = tonumber(redis.call('GET', ARGV[1] .. 'd:' .. ARGV[2]) or '')
if tomb and tomb >= tonumber(ARGV[7]) then return {0, false} end
` + luaCurrent + `
if cur then
  if ARGV[8] ~= 'put' then return {0, cur} end
  local curExp = tonumber(string.match(cur, '^(%d+)|'))
  local newExp = tonumber(string.match(ARGV[3], '^(%d+)|'))
  if curExp >= newExp then return {0, cur} end
end
` + luaBind)

	// redisCountsScript answers {upstream, count, ...} for every upstream
	// with live bindings. For each upstream it first removes the members
	// whose score (expiry) has passed, then counts what is left: the result
	// is exact at the moment the script runs. Upstreams left with no
	// bindings leave the name set.
	//
	// KEYS[1] upstream-name set, ARGV[1] key prefix.
	redisCountsScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, up in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local set = ARGV[1] .. 'u:' .. up
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  local n = redis.call('ZCARD', set)
  if n == 0 then
    redis.call('SREM', KEYS[1], up)
  else
    table.insert(out, up)
    table.insert(out, n)
  end
end
return out
`)
)
