// Package rendezvous is the highest-random-weight hash that the sticky
// policies fall back to while their store cannot be asked: every node
// sends a key to the same upstream, and an upstream joining or leaving
// moves only the keys it wins or held.
package rendezvous

import "hash/fnv"

// Weight is the weight of upstream id for key: FNV-1a of id, a NUL and
// key. The upstream of the largest weight wins.
func Weight(id, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return h.Sum64()
}
