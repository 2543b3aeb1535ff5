package affinity

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddylb/caddylb/internal/lbstats"
)

// Caddy's placeholders that tell how a request's last try ended. The
// status is set when an upstream answered; the latency only then too, so
// a latency unchanged since the try began means this try got no answer.
// The host:port is set by every reverse_proxy before its round trip: a
// different one at the end means another proxy ran after this policy's
// (handle_errors proxying an error page, say), so this one failed.
const (
	statusPlaceholder   = "http.reverse_proxy.status_code"
	latencyPlaceholder  = "http.reverse_proxy.upstream.latency"
	hostportPlaceholder = "http.reverse_proxy.upstream.hostport"
)

// countUpstream appends the try to st.tried and keeps the per-upstream
// counts the dashboard and metrics read: a session bound now counts at
// once; requests and errors count when the request has ended, from what
// Caddy recorded: when the sticky_learn handler around the proxy returns
// (settleOnReturn), else from lbstats's sweep once the request's context
// ended (lbstats.Track). The append and the counting share one critical
// section with Settle, so that a try is counted once whether it began
// before or after the settling.
func (s *Sticky) countUpstream(r *http.Request, st *requestState, up *reverseproxy.Upstream, outcome string) {
	if up == nil {
		return
	}
	if outcome == outcomeNew || outcome == outcomeRebound {
		lbstats.UpstreamCounters(up.Dial).Bound.Add(1)
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	var before any
	if ok {
		before, _ = repl.Get(latencyPlaceholder)
	}
	st.countMu.Lock()
	defer st.countMu.Unlock()
	st.tried = append(st.tried, up.Dial)
	if !ok {
		return // not a request Caddy serves (tests): nothing to read back
	}
	switch {
	case st.settled:
		// The client left and the request was counted; Caddy still
		// tries: this try can reach nobody.
		st.counted = len(st.tried)
		c := lbstats.UpstreamCounters(up.Dial)
		c.Requests.Add(1)
		c.Errors.Add(1)
		return
	case st.untracked:
		// Too many requests in flight to track this one: each try
		// counts when it begins, a retried one as failed, the last
		// with no outcome.
		if n := len(st.tried); n > 1 {
			lbstats.UpstreamCounters(st.tried[n-2]).Errors.Add(1)
		}
		st.counted = len(st.tried)
		lbstats.UpstreamCounters(up.Dial).Requests.Add(1)
		return
	}
	st.latencyBefore = before
	st.repl = repl
	if st.tracked || st.inLearn {
		return // counted by the sweep, or when sticky_learn returns
	}
	st.tracked = true
	if !lbstats.Track(r.Context(), st) {
		st.untracked = true
		st.counted = len(st.tried)
		lbstats.UpstreamCounters(up.Dial).Requests.Add(1)
	}
}

// Settle counts an ended request's tries (see countTries). It runs from
// lbstats's sweep once the request's context ended: normally after the
// handler chain returned; when the client left, possibly while Caddy
// still tries (countUpstream counts those tries then).
func (st *requestState) Settle() {
	st.countMu.Lock()
	defer st.countMu.Unlock()
	st.settled = true
	st.countTries(false)
}

// settleOnReturn counts the tries when the sticky_learn handler around
// the proxy returns, with failed set when the handlers under it returned
// an error or panicked. The proxy has finished then: no try can follow it
// within them, and what Caddy recorded is still in the processor's cache,
// where the sweep, 5 ms later, found it evicted (the sweep was 8.4% of a
// core at GOMAXPROCS=1, BENCHMARKS.md, "The whole stack"). A try the
// sweep tracks (one begun outside the handler) stays the sweep's.
func (st *requestState) settleOnReturn(failed bool) {
	st.countMu.Lock()
	defer st.countMu.Unlock()
	st.inLearn = false
	if st.tracked || st.repl == nil {
		return
	}
	st.countTries(failed)
}

// countTries counts the tries not counted yet: every one but the last
// failed (Caddy tries again only after a failure); the last failed when
// failed is set (the handlers returned an error or aborted the response:
// the client gets an error status or a truncated answer), when no
// upstream answered it, when another proxy ran after it, or when the
// answer was a 5xx. countMu is held.
func (st *requestState) countTries(failed bool) {
	for i := st.counted; i < len(st.tried); i++ {
		dial := st.tried[i]
		c := lbstats.UpstreamCounters(dial)
		c.Requests.Add(1)
		if i < len(st.tried)-1 || failed || !answeredWell(st.repl, dial, st.latencyBefore) {
			c.Errors.Add(1)
		}
	}
	st.counted = len(st.tried)
}

// answeredWell reports whether the upstream at dial answered the last try
// with a status under 500.
func answeredWell(repl *caddy.Replacer, dial string, latencyBefore any) bool {
	latency, ok := repl.Get(latencyPlaceholder)
	if !ok || latency == latencyBefore {
		return false
	}
	// Dial addresses with placeholders or a network ("unix/...") are
	// rewritten before the round trip; only a plain host:port compares.
	if !strings.ContainsAny(dial, "{/") {
		if hp, _ := repl.GetString(hostportPlaceholder); hp != dial {
			return false
		}
	}
	status, _ := repl.Get(statusPlaceholder)
	code, ok := status.(int)
	return ok && code < 500
}
