package assetcdn

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
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

// Defaults of the upload rate guard.
const (
	defaultMinRate      = 1 << 10 // bytes per second
	defaultMinRateGrace = 10 * time.Second
)

// errUploadTooSlow is returned by a guarded body once it was cut off.
var errUploadTooSlow = errors.New("upload slower than min_rate")

// rateGuard wraps a request body and cuts it off when it falls behind
// the minimum rate. Check runs from a timer, because the read it must
// end is blocked.
type rateGuard struct {
	body        io.ReadCloser
	minRate     float64 // bytes per second
	allowance   float64 // min_rate × grace: the most debt (and savings)
	setDeadline func(time.Time) error
	tick        time.Duration

	mu      sync.Mutex
	reading bool      // a Read is waiting for the client
	since   time.Time // when that Read began, or the last check during it
	debt    float64   // bytes owed; negative is savings
	cut     bool
	timer   *time.Timer
	stopped bool
}

// guardRate starts guarding r's body at minRate bytes per second with
// the given grace; a cut-off ends the blocked read through the
// connection's read deadline. Stop it when the upload is done.
func guardRate(w http.ResponseWriter, r *http.Request, minRate int64, grace time.Duration) *rateGuard {
	g := newRateGuard(r.Body, minRate, grace, http.NewResponseController(w).SetReadDeadline)
	r.Body = g
	return g
}

func newRateGuard(body io.ReadCloser, minRate int64, grace time.Duration, setDeadline func(time.Time) error) *rateGuard {
	g := &rateGuard{
		body:        body,
		minRate:     float64(minRate),
		allowance:   float64(minRate) * grace.Seconds(),
		setDeadline: setDeadline,
		tick:        min(max(grace/10, 10*time.Millisecond), time.Second),
	}
	g.mu.Lock()
	g.timer = time.AfterFunc(g.tick, g.check)
	g.mu.Unlock()
	return g
}

// Read reads from the client, counting the wait.
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
	return n, err
}

// account charges the wait since g.since and credits n bytes.
func (g *rateGuard) account(now time.Time, n int) {
	if g.reading {
		g.debt += g.minRate * now.Sub(g.since).Seconds()
		g.since = now
	}
	g.debt -= float64(n)
	if g.debt < -g.allowance {
		g.debt = -g.allowance
	}
}

// check runs every tick: it charges a read still waiting and cuts the
// body off once the debt passes the allowance, by moving the read
// deadline to now (which ends the blocked read).
func (g *rateGuard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped || g.cut {
		return
	}
	g.account(time.Now(), 0)
	if g.debt > g.allowance {
		g.cut = true
		// Without deadlines on the connection (HTTP/3) the read ends
		// with the client's next bytes, and fails then.
		_ = g.setDeadline(time.Now())
		return
	}
	g.timer.Reset(g.tick)
}

// tooSlow reports whether the guard cut the body off.
func (g *rateGuard) tooSlow() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cut
}

// stop ends the guard; the body stays usable.
func (g *rateGuard) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	g.timer.Stop()
}

// Close closes the client's body.
func (g *rateGuard) Close() error { return g.body.Close() }
