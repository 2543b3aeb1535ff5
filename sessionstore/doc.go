// Package sessionstore holds the session bindings that caddy-lb's sticky
// policy reads and writes: which upstream a session is pinned to, which
// upstreams are draining, how many sessions each one holds, and the node
// registry behind /lb/fleet.
//
// It plugs into Caddy as the "session_store" app (the `session_store` global
// option), whose stores are guest modules in the session_store.backends
// namespace: memory (the default when a policy names no store), redis (with
// Sentinel and Cluster) and memcached. Every backend is wrapped in a Store that
// adds deadlines, a circuit breaker and metrics. It imports no other caddy-lb
// module package.
//
// See docs/sessions.md and docs/fleet.md.
package sessionstore
