package affinity

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddylb/caddylb/internal/lbstats"
)

// A request's tries, as Caddy's reverse_proxy leaves its placeholders,
// and what each upstream's counters must say once it ended.
func TestCountUpstreamOutcomes(t *testing.T) {
	type try struct {
		up       string
		answered int    // status of the answer; 0: none (dial failed, timeout)
		hostport string // set by a later proxy (handle_errors), if not ""
	}
	for i, tc := range []struct {
		name      string
		tries     []try
		wantReqs  []int64
		wantErrs  []int64
		clientGo  bool // the client leaves before the last try
		extraTry  bool // ... and Caddy tries once more after the settle
		wantExtra [2]int64
	}{
		{name: "answered", tries: []try{{up: "a", answered: 200}}, wantReqs: []int64{1}, wantErrs: []int64{0}},
		{name: "a 404 is an answer", tries: []try{{up: "a", answered: 404}}, wantReqs: []int64{1}, wantErrs: []int64{0}},
		{name: "a 503", tries: []try{{up: "a", answered: 503}}, wantReqs: []int64{1}, wantErrs: []int64{1}},
		{name: "no answer", tries: []try{{up: "a"}}, wantReqs: []int64{1}, wantErrs: []int64{1}},
		{name: "retried", tries: []try{{up: "a"}, {up: "b", answered: 200}}, wantReqs: []int64{1, 1}, wantErrs: []int64{1, 0}},
		{name: "retried after a 200 then no answer", tries: []try{{up: "a", answered: 502}, {up: "b"}}, wantReqs: []int64{1, 1}, wantErrs: []int64{1, 1}},
		{name: "an error page proxied after", tries: []try{{up: "a", hostport: "errors:80", answered: 200}}, wantReqs: []int64{1}, wantErrs: []int64{1}},
		{name: "client gone, Caddy tries again", tries: []try{{up: "a"}}, clientGo: true, extraTry: true, wantReqs: []int64{1}, wantErrs: []int64{1}, wantExtra: [2]int64{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The counters are process-wide: addresses of their own for
			// each run (go test -count) and case.
			run := time.Now().UnixNano()
			addr := func(name string) string { return fmt.Sprintf("127.3.%d.%d:%d", i, name[0], run%60000+1) }
			s := &Sticky{}
			base := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
			repl := caddyhttp.NewTestReplacer(base)
			ctx, cancel := context.WithCancel(context.WithValue(base.Context(), caddy.ReplacerCtxKey, repl))
			defer cancel()
			r := base.WithContext(ctx)
			st := new(requestState)
			for n, tr := range tc.tries {
				up := testPool(addr(tr.up))[0]
				s.countUpstream(r, st, up, outcomeHit)
				repl.Set(hostportPlaceholder, up.Dial)
				if tr.answered != 0 {
					repl.Set(latencyPlaceholder, time.Duration(n+1)*time.Millisecond)
					repl.Set(statusPlaceholder, tr.answered)
				}
				if tr.hostport != "" {
					repl.Set(hostportPlaceholder, tr.hostport)
				}
			}
			cancel()
			lbstats.Settle()
			if tc.extraTry {
				up := testPool(addr("z"))[0]
				s.countUpstream(r, st, up, outcomeRebound)
				c := lbstats.UpstreamCounters(up.Dial)
				if got := [2]int64{c.Requests.Load(), c.Errors.Load()}; got != tc.wantExtra {
					t.Errorf("the try after the client left: requests, errors %v, want %v", got, tc.wantExtra)
				}
			}
			for k, tr := range tc.tries {
				c := lbstats.UpstreamCounters(addr(tr.up))
				if c.Requests.Load() != tc.wantReqs[k] || c.Errors.Load() != tc.wantErrs[k] {
					t.Errorf("try %d (%s): requests %d errors %d, want %d and %d", k, tr.up, c.Requests.Load(), c.Errors.Load(), tc.wantReqs[k], tc.wantErrs[k])
				}
			}
		})
	}
}
