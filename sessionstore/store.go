package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// ErrUnavailable is returned while a store's circuit breaker is open: the
// backend failed recently and is not asked again until its back-off ends.
var ErrUnavailable = errors.New("session store unavailable")

// CallTimeouter is implemented by network backends: how long one call may
// take before it counts as a failure. Backends without it (memory) are
// called directly, with no deadline and no breaker.
type CallTimeouter interface {
	CallTimeout() time.Duration
}

// Remembering is implemented by backends that keep a node-local copy of
// the bindings they read and wrote (Redis): the Store serves it while the
// backend cannot be asked, so a session keeps its upstream through a
// failover, and hands it the writes that failed to be done again.
type Remembering interface {
	// LastKnown returns the live binding of key this node last saw.
	LastKnown(key string) (Binding, bool)
	// LastDraining returns the drain set last read.
	LastDraining() (map[string]bool, bool)
	// Unwritten records b as key's binding, to be written once the
	// backend answers: with Put when put, else with Add.
	Unwritten(key string, b Binding, put bool)
}

// Store is a named backend as the request path uses it. Around a network
// backend it adds a deadline per call, a circuit breaker that answers
// ErrUnavailable at once while the backend is down (so requests do not
// queue behind a dead Redis), error logs limited to one every
// errorLogInterval, and latency and error metrics.
type Store struct {
	name    string
	backend Backend
	timeout time.Duration // zero: local backend, called directly
	logger  *zap.Logger
	breaker breaker
	local   struct { // LocalCounts, recounted at most every localCountsEvery
		mu     sync.Mutex
		counts map[string]int64
		at     time.Time
	}
	latency [opCount]prometheus.Observer
	errors  [opCount]prometheus.Counter
	callCtx atomic.Pointer[sharedDeadline]
	memory  Remembering // nil unless the backend remembers
	stale   prometheus.Counter
}

// sharedDeadline is a deadline context that calls starting within
// deadlineReuse of each other share, so that the request path does not
// allocate a context and a timer per store call (most calls are answered
// from a local cache). A call's deadline is therefore between timeout -
// deadlineReuse and timeout after it starts.
type sharedDeadline struct {
	ctx        context.Context
	cancel     context.CancelFunc // not called: the context ends with its timer
	reuseUntil time.Time
}

const deadlineReuse = 10 * time.Millisecond

// callContext is the context a network call runs under. A caller's
// deadline (the admin API gives its calls 5 s) replaces the store's
// per-call timeout, and the caller's cancellation applies. Without one
// (the request path) the call gets the store's timeout and is not
// cancelled with the client's request: a probe whose client went away
// must still tell the breaker how the store is.
func (s *Store) callContext(ctx context.Context, now time.Time) context.Context {
	if _, ok := ctx.Deadline(); ok {
		return ctx
	}
	return s.deadline(now)
}

func (s *Store) deadline(now time.Time) context.Context {
	if d := s.callCtx.Load(); d != nil && now.Before(d.reuseUntil) {
		return d.ctx
	}
	d := &sharedDeadline{reuseUntil: now.Add(deadlineReuse)}
	d.ctx, d.cancel = context.WithTimeout(context.Background(), s.timeout)
	s.callCtx.Store(d)
	return d.ctx
}

type op int

const (
	opGet op = iota
	opAdd
	opSwap
	opPut
	opDelete
	opSetDraining
	opDraining
	opCounts
	opCount
)

var opNames = [opCount]string{"get", "add", "swap", "put", "delete", "set_draining", "draining", "counts"}

// NewStore wraps backend as the store called name. The logger may be nil.
func NewStore(name string, backend Backend, logger *zap.Logger) *Store {
	if logger == nil {
		logger = zap.NewNop()
	}
	s := &Store{name: name, backend: backend, logger: logger}
	if t, ok := backend.(CallTimeouter); ok {
		s.timeout = t.CallTimeout()
	}
	s.memory, _ = backend.(Remembering)
	s.stale = storeMetrics.stale.WithLabelValues(name)
	for o := range opCount {
		s.latency[o] = storeMetrics.latency.WithLabelValues(name, opNames[o])
		s.errors[o] = storeMetrics.errors.WithLabelValues(name, opNames[o])
	}
	return s
}

// Name is the store's name from the config ("" for the default memory store).
func (s *Store) Name() string { return s.name }

// Backend returns the wrapped backend.
func (s *Store) Backend() Backend { return s.backend }

// BreakerOpen reports whether the store's circuit breaker is open: calls
// failed lately and are refused until the back-off ends.
func (s *Store) BreakerOpen() bool { return s.breaker.open.Load() }

// Shared reports whether the store is a network store that other LB nodes
// may share (redis, memcached), as opposed to this process's memory.
func (s *Store) Shared() bool { return s.timeout != 0 }

// Get returns the live binding of key, ErrNotFound, or an error. When the
// backend cannot be asked and remembers key's binding, that is returned.
func (s *Store) Get(ctx context.Context, key string) (Binding, error) {
	var b Binding
	err := s.call(ctx, opGet, func(ctx context.Context) (err error) {
		b, err = s.backend.Get(ctx, key)
		return err
	})
	if err != nil && s.memory != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrMalformed) {
		if known, ok := s.memory.LastKnown(key); ok {
			s.stale.Inc()
			return known, nil
		}
	}
	return b, err
}

// Remember hands the backend a binding whose write failed, when it can
// keep it: it is served by Get while the backend is away and written when
// it answers (see Remembering). Other backends forget it.
func (s *Store) Remember(key string, b Binding, put bool) {
	if s.memory != nil {
		s.memory.Unwritten(key, b, put)
	}
}

// Add stores b unless key has a live binding; see Backend.Add.
func (s *Store) Add(ctx context.Context, key string, b Binding) (Binding, bool, error) {
	var cur Binding
	var added bool
	err := s.call(ctx, opAdd, func(ctx context.Context) (err error) {
		cur, added, err = s.backend.Add(ctx, key, b)
		return err
	})
	return cur, added, err
}

// Swap replaces a binding to from (or a missing one) with b; see Backend.Swap.
func (s *Store) Swap(ctx context.Context, key, from string, b Binding) (Binding, bool, error) {
	var cur Binding
	var swapped bool
	err := s.call(ctx, opSwap, func(ctx context.Context) (err error) {
		cur, swapped, err = s.backend.Swap(ctx, key, from, b)
		return err
	})
	return cur, swapped, err
}

// Put stores b unconditionally.
func (s *Store) Put(ctx context.Context, key string, b Binding) error {
	return s.call(ctx, opPut, func(ctx context.Context) error { return s.backend.Put(ctx, key, b) })
}

// Delete forgets key.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.call(ctx, opDelete, func(ctx context.Context) error { return s.backend.Delete(ctx, key) })
}

// SetDraining marks or unmarks an upstream as draining for every node.
func (s *Store) SetDraining(ctx context.Context, upstream string, draining bool) error {
	return s.call(ctx, opSetDraining, func(ctx context.Context) error {
		return s.backend.SetDraining(ctx, upstream, draining)
	})
}

// Draining returns the shared set of draining upstreams (read-only); the
// last one read while the backend cannot be asked, if it remembers one.
func (s *Store) Draining(ctx context.Context) (map[string]bool, error) {
	var d map[string]bool
	err := s.call(ctx, opDraining, func(ctx context.Context) (err error) {
		d, err = s.backend.Draining(ctx)
		return err
	})
	if err != nil && s.memory != nil {
		if last, ok := s.memory.LastDraining(); ok {
			return last, nil
		}
	}
	return d, err
}

// Counts returns live bindings per upstream.
func (s *Store) Counts(ctx context.Context) (map[string]int64, error) {
	var c map[string]int64
	err := s.call(ctx, opCounts, func(ctx context.Context) (err error) {
		c, err = s.backend.Counts(ctx)
		return err
	})
	return c, err
}

// call runs one backend operation under the deadline and the breaker.
func (s *Store) call(ctx context.Context, o op, fn func(context.Context) error) error {
	if s.timeout == 0 {
		// A local backend: no deadline or breaker, but its errors (a full
		// memory store) are counted and logged all the same.
		err := fn(ctx)
		if err != nil && !errors.Is(err, ErrNotFound) {
			s.report(o, "session store call failed", err)
		}
		return err
	}
	now := time.Now()
	if !s.breaker.allow(now) {
		s.errors[o].Inc()
		return fmt.Errorf("session store %q: %w", s.name, ErrUnavailable)
	}
	callCtx := s.callContext(ctx, now)
	err := fn(callCtx)
	s.latency[o].Observe(time.Since(now).Seconds())
	if err != nil && callCtx == ctx && ctx.Err() != nil {
		// The caller gave up (an admin client hung up, its deadline
		// passed): that says nothing about the store, so the breaker
		// stays as it is.
		return fmt.Errorf("session store %q: %s: %w", s.name, opNames[o], err)
	}
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrMalformed) {
		if s.breaker.succeed() {
			s.logger.Info("session store reachable again", zap.String("store", s.name))
		}
		if errors.Is(err, ErrMalformed) {
			s.report(o, "session store holds a value that is not a binding; is the key prefix shared?", err)
		}
		return err
	}
	backoff := s.breaker.fail(time.Now())
	s.report(o, "session store call failed; requests fall back until it answers", err, zap.Duration("retry_in", backoff))
	return fmt.Errorf("session store %q: %s: %w", s.name, opNames[o], err)
}

// report counts a failed call and logs it, at most once per
// errorLogInterval with the number of failures not logged since.
func (s *Store) report(o op, msg string, err error, fields ...zap.Field) {
	s.errors[o].Inc()
	suppressed, ok := s.breaker.shouldLog(time.Now())
	if !ok {
		return
	}
	s.logger.Error(msg, append([]zap.Field{
		zap.String("store", s.name),
		zap.String("op", opNames[o]),
		zap.Int64("errors_not_logged", suppressed),
		zap.Error(err),
	}, fields...)...)
}

const (
	breakerMinBackoff = 200 * time.Millisecond
	breakerMaxBackoff = 5 * time.Second
	errorLogInterval  = 10 * time.Second
)

// breaker is a circuit breaker with exponential back-off. While open it
// rejects every call; when the back-off ends it lets one probe through
// (half-open) and closes on the probe's success.
type breaker struct {
	mu         sync.Mutex
	failures   int
	openUntil  time.Time
	probing    bool
	open       atomic.Bool // fast path: false while healthy
	lastLog    time.Time
	suppressed int64
}

func (b *breaker) allow(now time.Time) bool {
	if !b.open.Load() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.openUntil) || b.probing {
		return false
	}
	b.probing = true
	return true
}

// succeed closes the breaker and reports whether it had been open.
func (b *breaker) succeed() bool {
	if !b.open.Load() {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	wasOpen := b.failures > 0
	b.failures, b.probing = 0, false
	b.open.Store(false)
	return wasOpen
}

// fail opens the breaker for the next back-off and returns it.
func (b *breaker) fail(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	backoff := breakerMinBackoff << min(b.failures-1, 8)
	backoff = min(backoff, breakerMaxBackoff)
	b.openUntil = now.Add(backoff)
	b.probing = false
	b.open.Store(true)
	return backoff
}

// shouldLog reports whether an error may be logged now and how many were
// not logged since the last one.
func (b *breaker) shouldLog(now time.Time) (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.lastLog) < errorLogInterval {
		b.suppressed++
		return 0, false
	}
	n := b.suppressed
	b.lastLog, b.suppressed = now, 0
	return n, true
}

// LocalCounter is implemented by shared backends that remember on each
// node the bindings it read or wrote (Redis, with known_bindings).
type LocalCounter interface {
	// LocalCounts returns this node's remembered live bindings per
	// upstream, or nil when it remembers none by configuration.
	LocalCounts() map[string]int64
}

// localCountsEvery bounds how often a store walks its remembered
// bindings (up to known_bindings of them) for LocalCounts.
const localCountsEvery = 5 * time.Second

// LocalCounts returns the sessions bound to each upstream that this node
// knows of: for a memory store, all of them; for a Redis store, those it
// read or wrote lately (its known_bindings), recounted at most every 5 s;
// ok is false for a store that keeps no such copy (memcached).
func (s *Store) LocalCounts(ctx context.Context) (counts map[string]int64, ok bool) {
	switch b := s.backend.(type) {
	case *MemoryBackend:
		c, err := b.Counts(ctx)
		return c, err == nil
	case LocalCounter:
		s.local.mu.Lock()
		defer s.local.mu.Unlock()
		if now := time.Now(); s.local.counts == nil || now.Sub(s.local.at) >= localCountsEvery {
			s.local.counts, s.local.at = b.LocalCounts(), now
		}
		return s.local.counts, s.local.counts != nil
	}
	return nil, false
}
