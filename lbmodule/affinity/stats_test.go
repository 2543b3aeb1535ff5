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

// Under sticky_learn the tries are counted when the handler returns, while
// the request's context is still live (no sweep involved); an error the
// proxy returns counts the last try as failed; a try that begins after the
// handler returned (a handle_errors proxy) is the sweep's to count, once.
// A panic (http.ErrAbortHandler) goes on up, and the try counts as failed.
func TestCountUpstreamOnLearnReturn(t *testing.T) {
	run := time.Now().UnixNano()
	for i, tc := range []struct {
		name       string
		answered   []int // per try: the status, 0 for none
		handlerErr error
		panics     bool // as Caddy's proxy does when a response breaks after its headers
		wantReqs   []int64
		wantErrs   []int64
	}{
		{name: "answered", answered: []int{200}, wantReqs: []int64{1}, wantErrs: []int64{0}},
		{name: "retried", answered: []int{0, 200}, wantReqs: []int64{1, 1}, wantErrs: []int64{1, 0}},
		{name: "a 502 answered", answered: []int{502}, wantReqs: []int64{1}, wantErrs: []int64{1}},
		{name: "the proxy returned an error", answered: []int{0}, handlerErr: fmt.Errorf("no upstreams available"), wantReqs: []int64{1}, wantErrs: []int64{1}},
		{name: "an error after a 200 from a handler", answered: []int{200}, handlerErr: fmt.Errorf("writing the response"), wantReqs: []int64{1}, wantErrs: []int64{1}},
		{name: "the body broke after the headers", answered: []int{200}, panics: true, wantReqs: []int64{1}, wantErrs: []int64{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := func(n int) string { return fmt.Sprintf("127.4.%d.%d:%d", i, n, run%60000+1) }
			s := &Sticky{}
			base := newRequest()
			ctx, cancel := context.WithCancel(base.Context())
			defer cancel()
			r := base.WithContext(ctx)
			repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				st := stateOf(r)
				for n, status := range tc.answered {
					up := testPool(addr(n))[0]
					s.countUpstream(r, st, up, outcomeHit)
					repl.Set(hostportPlaceholder, up.Dial)
					if status != 0 {
						repl.Set(latencyPlaceholder, time.Duration(n+1)*time.Millisecond)
						repl.Set(statusPlaceholder, status)
					}
				}
				if tc.panics {
					panic(http.ErrAbortHandler)
				}
				return tc.handlerErr
			})
			func() {
				defer func() {
					if p := recover(); (p != nil) != tc.panics {
						t.Fatalf("panic %v, want one: %v", p, tc.panics)
					}
				}()
				if err := new(Learn).ServeHTTP(httptest.NewRecorder(), r, next); err != tc.handlerErr {
					t.Fatalf("ServeHTTP returned %v, want the handler's %v", err, tc.handlerErr)
				}
			}()
			for n := range tc.answered {
				c := lbstats.UpstreamCounters(addr(n))
				if c.Requests.Load() != tc.wantReqs[n] || c.Errors.Load() != tc.wantErrs[n] {
					t.Errorf("try %d with the context still live: requests %d errors %d, want %d and %d", n, c.Requests.Load(), c.Errors.Load(), tc.wantReqs[n], tc.wantErrs[n])
				}
			}

			// A handle_errors proxy after the handler returned: tracked
			// and counted by the sweep, and the earlier tries not again.
			st := stateOf(r)
			late := testPool(addr(9))[0]
			s.countUpstream(r, st, late, outcomeHit)
			repl.Set(hostportPlaceholder, late.Dial)
			repl.Set(latencyPlaceholder, time.Hour)
			repl.Set(statusPlaceholder, 200)
			if c := lbstats.UpstreamCounters(late.Dial); c.Requests.Load() != 0 {
				t.Errorf("the late try counted %d before the request ended", c.Requests.Load())
			}
			cancel()
			lbstats.Settle()
			if c := lbstats.UpstreamCounters(late.Dial); c.Requests.Load() != 1 || c.Errors.Load() != 0 {
				t.Errorf("the late try: requests %d errors %d, want 1 and 0", c.Requests.Load(), c.Errors.Load())
			}
			for n := range tc.answered {
				if c := lbstats.UpstreamCounters(addr(n)); c.Requests.Load() != tc.wantReqs[n] {
					t.Errorf("try %d counted again by the sweep: requests %d", n, c.Requests.Load())
				}
			}
		})
	}
}
