package lbstats

import (
	"context"
	"sync"
	"time"
)

// sweepInterval is how often ended requests are looked at. Their counts
// are therefore at most this late. Short, because a tracked request's
// context keeps the whole request alive until the sweep, and at
// thousands of requests a second the garbage collector marks all of
// them on every cycle: at 250 ms this cost about 18 µs of CPU per
// request at GOMAXPROCS=1, at 5 ms it is within the noise
// (BENCHMARKS.md, "The whole stack"). The sweeper stops while nothing is
// pending, so an idle node does not wake.
const sweepInterval = 5 * time.Millisecond

// maxTracked bounds the requests waiting to be looked at. Past it (more
// than this many requests in flight at once, long-lived websockets or
// event streams, say), Track refuses a new request: its caller counts it
// without an outcome.
const maxTracked = 1 << 16

// Settler counts a request once it has ended.
type Settler interface{ Settle() }

// tracked is one request whose outcome is read once its context ends.
type tracked struct {
	ctx     context.Context
	settler Settler
}

var tracker struct {
	mu      sync.Mutex
	pending []tracked
	running bool
}

// Track calls s.Settle once ctx is done, from a background sweep, and
// reports whether it will (false: too many requests are in flight). An
// HTTP server cancels a request's context when its handler returns, so
// Settle normally sees everything the handler chain recorded for the
// request (Caddy's placeholders); it also cancels it when the client goes
// away, while the handler may still run: Settle and whatever the request
// still records must then synchronize. One goroutine sweeps while
// anything is pending; the hot path only appends to a slice (a pointer as
// s allocates nothing).
func Track(ctx context.Context, s Settler) bool {
	tracker.mu.Lock()
	defer tracker.mu.Unlock()
	if len(tracker.pending) >= maxTracked {
		return false
	}
	tracker.pending = append(tracker.pending, tracked{ctx, s})
	startSweeper()
	return true
}

// startSweeper starts the sweep unless it runs; tracker.mu is held.
func startSweeper() {
	if !tracker.running && len(tracker.pending) > 0 {
		tracker.running = true
		go sweep()
	}
}

// sweep settles ended requests until none is pending.
func sweep() {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for range t.C {
		if !settleEnded(true) {
			return
		}
	}
}

// settleEnded settles the requests that ended and reports whether any is
// left. With stop, the sweeper is marked stopped when none is, under the
// lock that Track starts a new one under.
func settleEnded(stop bool) bool {
	tracker.mu.Lock()
	batch := tracker.pending
	tracker.pending = nil
	tracker.mu.Unlock()

	live := batch[:0]
	for _, p := range batch {
		if p.ctx.Err() != nil {
			p.settler.Settle()
		} else {
			live = append(live, p)
		}
	}
	clear(batch[len(live):])

	tracker.mu.Lock()
	defer tracker.mu.Unlock()
	tracker.pending = append(live, tracker.pending...)
	if stop {
		if len(tracker.pending) == 0 {
			tracker.running = false
		}
	} else {
		// A sweep that ran while this batch was out may have found
		// nothing and stopped: start one for what is left.
		startSweeper()
	}
	return len(tracker.pending) > 0
}

// Settle settles every request whose context is done now, for readers
// that want exact counts without waiting for the sweep.
func Settle() { settleEnded(false) }
