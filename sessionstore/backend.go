package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrNotFound is returned by Get when a key has no live binding.
var ErrNotFound = errors.New("binding not found")

// ErrMalformed wraps a stored value that is not a binding (another program
// writing under the key prefix, say). It is a data error, not an outage:
// the Store logs it but does not open its breaker.
var ErrMalformed = errors.New("malformed binding")

// Binding pins one session to one upstream until it expires.
type Binding struct {
	// Upstream is the upstream's dial address, the identity Caddy gives it.
	Upstream string
	// Expires is when the binding stops counting. Backends drop it then.
	Expires time.Time
}

// Live reports whether b is still in force at now.
func (b Binding) Live(now time.Time) bool { return b.Upstream != "" && now.Before(b.Expires) }

// TTL is the time b has left at now, at least one millisecond so that
// backends never receive a zero (which means "no expiry" to several of them).
func (b Binding) TTL(now time.Time) time.Duration {
	if d := b.Expires.Sub(now); d > time.Millisecond {
		return d
	}
	return time.Millisecond
}

// Backend is what each store module implements. Keys are opaque, already
// namespaced and hashed by the caller, at most 64 bytes of [A-Za-z0-9_:-].
// Every method must be safe for concurrent use.
type Backend interface {
	// Get returns the live binding of key, or ErrNotFound.
	Get(ctx context.Context, key string) (Binding, error)

	// Add stores b under key unless a live binding exists. It returns the
	// binding in force afterwards and whether it is b.
	Add(ctx context.Context, key string, b Binding) (current Binding, added bool, err error)

	// Swap stores b under key if the key has no live binding or its binding
	// points at upstream from. It returns the binding in force afterwards and
	// whether it is b. Two LB nodes that rebind one session at once therefore
	// agree on a single new upstream.
	Swap(ctx context.Context, key, from string, b Binding) (current Binding, swapped bool, err error)

	// Put stores b under key unconditionally (learning a session the
	// application just created).
	Put(ctx context.Context, key string, b Binding) error

	// Delete forgets key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error

	// SetDraining marks or unmarks upstream as draining for every node
	// sharing the store.
	SetDraining(ctx context.Context, upstream string, draining bool) error

	// Draining returns the set of draining upstreams. The caller must not
	// modify the map; backends may return the same map to many callers.
	Draining(ctx context.Context) (map[string]bool, error)

	// Counts returns the number of live bindings per upstream. Backends
	// document how exact it is.
	Counts(ctx context.Context) (map[string]int64, error)
}

// EncodeBinding is the wire form network backends keep as a value:
// "<expires unix ms>|<upstream>". It is small, and Lua scripts and humans
// reading redis-cli can split it.
func EncodeBinding(b Binding) string {
	return strconv.FormatInt(b.Expires.UnixMilli(), 10) + "|" + b.Upstream
}

// DecodeBinding parses EncodeBinding's form.
func DecodeBinding(s string) (Binding, error) {
	ms, upstream, ok := strings.Cut(s, "|")
	if !ok || upstream == "" {
		return Binding{}, fmt.Errorf("%w %q", ErrMalformed, truncate(s, 64))
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n <= 0 {
		return Binding{}, fmt.Errorf("%w expiry %q", ErrMalformed, truncate(ms, 32))
	}
	return Binding{Upstream: upstream, Expires: time.UnixMilli(n)}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
