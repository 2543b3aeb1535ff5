package affinity

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddylb/caddylb/internal/lbstats"
)

// Caddy's placeholders that tell how a request's last try ended. The
// status is set when an upstream answered; the latency only then too, so
// a latency unchanged since the try began means this try got no answer.
const (
	statusPlaceholder  = "http.reverse_proxy.status_code"
	latencyPlaceholder = "http.reverse_proxy.upstream.latency"
)

// countUpstream keeps the per-upstream counts the dashboard and metrics
// read: a session bound now counts at once; requests and errors count
// when the request has ended (lbstats.Track), from what Caddy recorded.
func (s *Sticky) countUpstream(r *http.Request, st *requestState, up *reverseproxy.Upstream, outcome string) {
	if up == nil {
		return
	}
	if outcome == outcomeNew || outcome == outcomeRebound {
		lbstats.UpstreamCounters(up.Dial).Bound.Add(1)
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	st.latencyBefore, _ = repl.Get(latencyPlaceholder)
	if st.repl != nil {
		return // tracked since its first try
	}
	st.repl = repl
	lbstats.Track(r.Context(), st)
}

// Settle counts an ended request's tries: every try but the last failed
// (Caddy tries again only after a failure); the last failed when no
// upstream answered it or the answer was a 5xx.
func (st *requestState) Settle() {
	for i, dial := range st.tried {
		c := lbstats.UpstreamCounters(dial)
		c.Requests.Add(1)
		if i < len(st.tried)-1 || !answeredWell(st.repl, st.latencyBefore) {
			c.Errors.Add(1)
		}
	}
}

func answeredWell(repl *caddy.Replacer, latencyBefore any) bool {
	latency, ok := repl.Get(latencyPlaceholder)
	if !ok || latency == latencyBefore {
		return false
	}
	status, _ := repl.Get(statusPlaceholder)
	code, ok := status.(int)
	return ok && code < 500
}
