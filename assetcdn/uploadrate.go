package assetcdn

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// A client that trickles an upload (sends some data, then a byte now and
// then) holds what the upload holds: a connection, a goroutine and, for
// S3 stores, part buffers of upload_memory. Caddy's read timeouts reset
// on every byte, so they do not end it; a few such clients can keep every
// other upload waiting for memory. Like Kestrel's MinRequestBodyDataRate
// and Apache's mod_reqtimeout MinRate, the body must arrive at a minimum
// rate, counted only while the handler waits for the client (not while
// the store is slow to take what was read).
//
// The rule is a budget: every second spent waiting for the client costs
// min_rate bytes, every byte received pays one back. Savings are capped
// at one grace period's worth (min_rate × grace), so a fast start buys at
// most one grace of trickling later; an upload whose debt passes one
// grace period's worth is cut off. A client sending nothing is cut off
// after one grace period; one sending at half the rate after two, and so
// on; one at the rate or faster, never.
//
// A per-connection floor low enough for a slow phone does not protect
// memory: filling an 8 MiB part at 1 KiB/s takes over two hours. So while
// the S3 store holds a part buffer of upload_memory for the upload, the
// floor rises to part_size per part_hold_time (8 MiB per 5 minutes, about
// 28 KB/s, by default): an upload holds memory only while it fills it at
// a rate that frees it in bounded time (objectstore.RaiseMinRate).

// Defaults of the upload rate guard.
const (
	defaultMinRate      = 1 << 10 // bytes per second
	defaultMinRateGrace = 10 * time.Second
)

// multiplexedGrace is the least grace of an HTTP/2 or HTTP/3 upload
// (see guardRate): longer than partBufferWait, how long a sibling upload
// may wait for memory without reading.
const multiplexedGrace = 30 * time.Second

// errUploadTooSlow is returned by a guarded body once it was cut off.
var errUploadTooSlow = errors.New("upload slower than min_rate")

// rateGuard wraps a request body and cuts it off when it falls behind
// the minimum rate. Check runs from a timer, because the read it must
// end is blocked.
type rateGuard struct {
	body        io.ReadCloser
	grace       time.Duration
	setDeadline func(time.Time) error
	tick        time.Duration

	mu      sync.Mutex
	minRate float64   // bytes per second: min_rate, or the store's floor while raised
	reading bool      // a Read is waiting for the client
	since   time.Time // when that Read began, or the last check during it
	debt    float64   // bytes owed; negative is savings
	cut     bool
	timer   *time.Timer
	stopped bool // the body ended or the upload is done
}

// guardRate starts guarding r's body at minRate bytes per second with
// the given grace; a cut-off ends the blocked read through the
// connection's read deadline. The returned request carries the guard in
// its context, for the store to raise the rate (objectstore.RaiseMinRate). Stop it
// when the upload is done.
func guardRate(w http.ResponseWriter, r *http.Request, minRate int64, grace time.Duration) (*rateGuard, *http.Request) {
	if r.ProtoMajor >= 2 {
		// One HTTP/2 (or 3) connection carries many streams under one
		// flow-control window: a sibling stream whose handler does not
		// read (an upload waiting for a part buffer, a proxied body a
		// backend does not take) stalls this one, and its slowness is not
		// the client's. Such a stream costs a goroutine, bounded per
		// connection by max_concurrent_streams; only the memory a stream
		// holds needs the rate (objectstore.RaiseMinRate), and with a grace longer
		// than the 10 s an upload may wait for a part buffer.
		minRate, grace = 0, max(grace, multiplexedGrace)
	}
	g := newRateGuard(r.Body, minRate, grace, http.NewResponseController(w).SetReadDeadline)
	r = r.WithContext(objectstore.WithRateRaiser(r.Context(), g))
	r.Body = g
	return g, r
}

func newRateGuard(body io.ReadCloser, minRate int64, grace time.Duration, setDeadline func(time.Time) error) *rateGuard {
	g := &rateGuard{
		body:        body,
		grace:       grace,
		minRate:     float64(minRate),
		setDeadline: setDeadline,
		tick:        min(max(grace/10, 10*time.Millisecond), time.Second),
	}
	g.mu.Lock()
	g.timer = time.AfterFunc(g.tick, g.check)
	g.mu.Unlock()
	return g
}

// Read reads from the client, counting the wait. The end of the body
// ends the guard: what arrived in full is never cut off afterwards.
func (g *rateGuard) Read(p []byte) (int, error) {
	g.mu.Lock()
	if g.cut {
		g.mu.Unlock()
		return 0, errUploadTooSlow
	}
	g.reading, g.since = true, time.Now()
	g.mu.Unlock()

	n, err := g.body.Read(p)

	g.mu.Lock()
	defer g.mu.Unlock()
	g.account(time.Now(), n)
	g.reading = false
	if g.cut {
		// The deadline set by check ended the read: say why.
		return n, errUploadTooSlow
	}
	if err == io.EOF {
		g.stopLocked()
	}
	return n, err
}

// allowance is the most debt (and savings) at the current rate: one
// grace period's worth.
func (g *rateGuard) allowance() float64 { return g.minRate * g.grace.Seconds() }

// account charges the wait since g.since and credits n bytes.
func (g *rateGuard) account(now time.Time, n int) {
	if g.reading {
		g.debt += g.minRate * now.Sub(g.since).Seconds()
		g.since = now
	}
	g.debt -= float64(n)
	if a := g.allowance(); g.debt < -a {
		g.debt = -a
	}
}

// check runs every tick: it charges a read still waiting and, while one
// waits (never while the handler is busy with what arrived), cuts the
// body off once the debt passes the allowance, by moving the read
// deadline to now (which ends the blocked read).
func (g *rateGuard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped || g.cut {
		return
	}
	g.account(time.Now(), 0)
	if g.reading && g.debt > g.allowance() {
		g.cut = true
		// Without deadlines on the connection (HTTP/3) the read ends
		// with the client's next bytes, and fails then.
		_ = g.setDeadline(time.Now())
		return
	}
	g.timer.Reset(g.tick)
}

// raise sets the rate to at least rate bytes per second until the
// returned function restores the previous one.
func (g *rateGuard) raise(rate float64) (restore func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	prev := g.minRate
	g.minRate = max(prev, rate)
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.minRate = prev
		// What fell behind the raised rate is forgiven with the memory it
		// held: at the lower rate that debt would cut the next file of a
		// request at once. Savings stay.
		g.debt = min(g.debt, 0)
	}
}

// RaiseMinRate implements objectstore.RateRaiser: a store raises the
// upload's minimum rate while it holds memory for it.
func (g *rateGuard) RaiseMinRate(rate float64) (restore func()) { return g.raise(rate) }

// stop ends the guard; the body stays usable.
func (g *rateGuard) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
}

func (g *rateGuard) stopLocked() {
	g.stopped = true
	g.timer.Stop()
}

// Close closes the client's body.
func (g *rateGuard) Close() error { return g.body.Close() }
