package sessionstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// The node registry of a Redis store, in one hash slot ({fleet}) so that
// it works on a cluster too:
//
//	P{fleet}nodes       sorted set: member node id, score = when its record expires (unix ms)
//	P{fleet}node:<id>   the node's record (JSON), PX = three heartbeats

// FleetHeartbeat implements FleetBackend.
func (r *RedisBackend) FleetHeartbeat() time.Duration { return time.Duration(r.Heartbeat) }

// redisRegisterScript writes a node's record and its entry in the sorted
// set of ids, scored by the record's expiry in the server's clock, and
// drops the ids whose records have expired: one clock for every node, so
// a node whose clock is off neither evicts the others nor itself.
//
// KEYS[1] the record, KEYS[2] the ids; ARGV[1] the id, ARGV[2] the
// record, ARGV[3] its ttl in ms.
var redisRegisterScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
return 1
`)

// Register implements FleetBackend: it writes the node's record, which
// expires after ttl unless written again, and drops the ids of nodes whose
// records have expired.
func (r *RedisBackend) Register(ctx context.Context, id string, record []byte, ttl time.Duration) error {
	conn, err := r.client.get()
	if err != nil {
		return fmt.Errorf("redis fleet register: %w", err)
	}
	p := fleetPrefix(r.KeyPrefix)
	err = redisRegisterScript.Exec(ctx, conn, []string{p + "node:" + id, p + "nodes"},
		[]string{id, string(record), strconv.FormatInt(ttl.Milliseconds(), 10)}).Error()
	if err != nil {
		return fmt.Errorf("redis fleet register: %w", err)
	}
	return nil
}

// Members implements FleetBackend: the records of the nodes that
// heartbeat within their ttl.
func (r *RedisBackend) Members(ctx context.Context) ([][]byte, error) {
	conn, err := r.client.get()
	if err != nil {
		return nil, fmt.Errorf("redis fleet members: %w", err)
	}
	p := fleetPrefix(r.KeyPrefix)
	ids, err := conn.Do(ctx, conn.B().Zrange().Key(p+"nodes").Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("redis fleet members: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = p + "node:" + id
	}
	values, err := conn.Do(ctx, conn.B().Mget().Key(keys...).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("redis fleet members: %w", err)
	}
	out := make([][]byte, 0, len(values))
	for _, v := range values {
		s, err := v.ToString()
		if err != nil {
			continue // expired between the two reads
		}
		out = append(out, []byte(s))
	}
	return out, nil
}
