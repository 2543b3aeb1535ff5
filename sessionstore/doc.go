// Package sessionstore holds the session bindings that caddy-lb's sticky
// load-balancing policy reads and writes: which upstream a session is pinned
// to, which upstreams are draining, and how many sessions each one holds.
//
// Stores are named in the `session_store` global option and provisioned by
// the "session_store" Caddy app. Each store is a guest module in the
// session_store.backends namespace: memory (in-process, the default when a
// policy names no store), redis and memcached (shared by several LB nodes).
// Connections live in package-level pools keyed by their settings, so a
// config reload reuses them instead of reconnecting.
//
// Every backend is wrapped in a Store, which adds what a request path needs
// from a network store: a deadline per call, a circuit breaker that fails
// fast while the backend is down, rate-limited error logs, and metrics.
package sessionstore
