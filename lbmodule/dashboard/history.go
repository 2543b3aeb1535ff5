package dashboard

import (
	"slices"
	"sync"
	"time"

	"github.com/caddylb/caddylb/assetcdn"
	"github.com/caddylb/caddylb/internal/lbstats"
	"github.com/caddylb/caddylb/lbmodule/lbadmin"
	"github.com/caddylb/caddylb/sessionstore"
)

// The history the sparklines and the per-minute rates are drawn from:
// every sampleInterval, the node's cumulative counters, for the last
// historySpan. It is bounded: historyLen samples of at most
// maxSeriesUpstreams upstreams each.
const (
	sampleInterval     = 5 * time.Second
	historySpan        = 15 * time.Minute
	historyLen         = int(historySpan/sampleInterval) + 1
	maxSeriesUpstreams = 512
	rateWindow         = time.Minute
)

// upstreamTotals are one upstream's cumulative counts at a sample.
type upstreamTotals struct{ requests, errors, bound int64 }

// sample is the node's cumulative counters at one time.
type sample struct {
	at        time.Time
	upstreams map[string]upstreamTotals
	policies  map[string]map[string]int64
	stores    map[string]sessionstore.CallStats
	uploads   assetcdn.UploadStats
}

// takeSample reads every counter now. They are package-level and outlive
// config reloads; of the upstreams, those of the running config come
// first, then any other counted, up to maxSeriesUpstreams.
func takeSample(now time.Time) sample {
	s := sample{
		at:        now,
		upstreams: map[string]upstreamTotals{},
		policies:  map[string]map[string]int64{},
		stores:    sessionstore.AllCallStats(),
		uploads:   assetcdn.Uploads(),
	}
	lbstats.Settle()
	for _, addr := range lbadmin.Addresses() {
		if len(s.upstreams) < maxSeriesUpstreams {
			c := lbstats.UpstreamCounters(addr)
			s.upstreams[addr] = upstreamTotals{c.Requests.Load(), c.Errors.Load(), c.Bound.Load()}
		}
	}
	lbstats.EachUpstream(func(addr string, c *lbstats.Upstream) {
		if _, ok := s.upstreams[addr]; !ok && len(s.upstreams) < maxSeriesUpstreams {
			s.upstreams[addr] = upstreamTotals{c.Requests.Load(), c.Errors.Load(), c.Bound.Load()}
		}
	})
	lbstats.EachPolicy(func(name string, o *lbstats.Outcomes) {
		s.policies[name] = o.Snapshot()
	})
	return s
}

// history is a ring of samples, oldest first.
type history struct {
	mu      sync.Mutex
	samples []sample
}

func (h *history) add(s sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.samples) == historyLen {
		copy(h.samples, h.samples[1:])
		h.samples = h.samples[:historyLen-1]
	}
	h.samples = append(h.samples, s)
}

// list returns a copy of the samples, oldest first (add shifts them in
// place); the maps inside are never written after a sample is taken.
func (h *history) list() []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.samples)
}

// sampler is the one history of this process. It runs while at least one
// lb_dashboard handler is provisioned: a reload provisions the new config
// before cleaning up the old, so the history survives reloads.
var sampler struct {
	mu   sync.Mutex
	refs int
	stop chan struct{}
	hist *history
}

// useHistory starts the sampler if needed and returns the history and a
// release for the handler's Cleanup.
func useHistory() (*history, func()) {
	sampler.mu.Lock()
	defer sampler.mu.Unlock()
	if sampler.refs == 0 {
		// A new start (no dashboard was left): its series begin anew,
		// rather than spanning the time nobody sampled.
		sampler.hist = new(history)
		sampler.stop = make(chan struct{})
		go runSampler(sampler.hist, sampler.stop)
	}
	sampler.refs++
	var once sync.Once
	return sampler.hist, func() {
		once.Do(func() {
			sampler.mu.Lock()
			defer sampler.mu.Unlock()
			sampler.refs--
			if sampler.refs == 0 {
				close(sampler.stop)
			}
		})
	}
}

func runSampler(h *history, stop chan struct{}) {
	h.add(takeSample(time.Now()))
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			h.add(takeSample(now))
		}
	}
}

// baseline returns the newest sample at least window older than now, or
// the oldest there is; ok is false without samples.
func baseline(samples []sample, now time.Time, window time.Duration) (sample, bool) {
	if len(samples) == 0 {
		return sample{}, false
	}
	best := samples[0]
	for _, s := range samples {
		if now.Sub(s.at) >= window {
			best = s
		}
	}
	return best, true
}

// perSecond is the rate of a counter that went from before to now over
// the time between the two readings; a counter that went down (it cannot,
// they are process-wide) or no time reads 0.
func perSecond(before, now int64, dt time.Duration) float64 {
	if dt <= 0 || now < before {
		return 0
	}
	return float64(now-before) / dt.Seconds()
}
