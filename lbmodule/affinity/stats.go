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
// once; requests and errors count when the request has ended
// (lbstats.Track), from what Caddy recorded. The append and the counting
// share one critical section with Settle, so that a try is counted once
// whether it began before or after the settling.
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
		lbstats.UpstreamCounters(up.Dial).Requests.Add(1)
		return
	}
	st.latencyBefore = before
	if st.repl != nil {
		return // tracked since its first try
	}
	st.repl = repl
	if !lbstats.Track(r.Context(), st) {
		st.untracked = true
		lbstats.UpstreamCounters(up.Dial).Requests.Add(1)
	}
}

// Settle counts an ended request's tries: every try but the last failed
// (Caddy tries again only after a failure); the last failed when no
// upstream answered it, when another proxy ran after it, or when the
// answer was a 5xx. It runs from lbstats's sweep once the request's
// context ended: normally after the handler chain returned; when the
// client left, possibly while Caddy still tries (countUpstream counts
// those tries then).
func (st *requestState) Settle() {
	st.countMu.Lock()
	defer st.countMu.Unlock()
	st.settled = true
	for i, dial := range st.tried {
		c := lbstats.UpstreamCounters(dial)
		c.Requests.Add(1)
		if i < len(st.tried)-1 || !answeredWell(st.repl, dial, st.latencyBefore) {
			c.Errors.Add(1)
		}
	}
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
