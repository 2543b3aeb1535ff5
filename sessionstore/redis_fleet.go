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

// Register implements FleetBackend: it writes the node's record, which
// expires after ttl unless written again, and drops the ids of nodes whose
// records have expired.
func (r *RedisBackend) Register(ctx context.Context, id string, record []byte, ttl time.Duration) error {
	conn, err := r.client.get()
	if err != nil {
		return fmt.Errorf("redis fleet register: %w", err)
	}
	p := fleetPrefix(r.KeyPrefix)
	// Each id's score is its own record's expiry, so a node with a short
	// heartbeat never removes one with a longer one.
	now := time.Now().UnixMilli()
	for _, res := range conn.DoMulti(ctx,
		conn.B().Set().Key(p+"node:"+id).Value(rueidis.BinaryString(record)).Px(ttl).Build(),
		conn.B().Zadd().Key(p+"nodes").ScoreMember().ScoreMember(float64(now+ttl.Milliseconds()), id).Build(),
		conn.B().Zremrangebyscore().Key(p+"nodes").Min("-inf").Max("("+strconv.FormatInt(now, 10)).Build(),
	) {
		if err := res.Error(); err != nil {
			return fmt.Errorf("redis fleet register: %w", err)
		}
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
