package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const proxyToUpstreams = `{
	{{.Global}}
}

:{{.HTTPPort}} {
	reverse_proxy {{.X.upstreams}} {
		lb_policy round_robin
	}
}
`

// whoami asks Caddy which backend answers and checks that the X-Backend
// header and the body agree on it.
func whoami(t *testing.T, c *http.Client, caddy *Caddy) string {
	t.Helper()
	resp, body := Get(t, c, caddy.URL("/whoami"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /whoami: %s: %s", resp.Status, body)
	}
	var who struct{ Backend string }
	if err := json.Unmarshal([]byte(body), &who); err != nil {
		t.Fatalf("GET /whoami: %v in %q", err, body)
	}
	if h := resp.Header.Get("X-Backend"); h != who.Backend {
		t.Fatalf("X-Backend %q but body says backend %q", h, who.Backend)
	}
	return who.Backend
}

// answering counts which backends answer n requests through caddy.
func answering(t *testing.T, caddy *Caddy, n int) map[string]int {
	t.Helper()
	c := NewClient()
	seen := map[string]int{}
	for range n {
		seen[whoami(t, c, caddy)]++
	}
	return seen
}

func TestCaddyProxiesReloadsAndRestarts(t *testing.T) {
	backends := StartBackends(t, 2)
	caddy := StartCaddyWith(t, proxyToUpstreams, map[string]any{"upstreams": Upstreams(backends)})

	if seen := answering(t, caddy, 10); seen["b1"] == 0 || seen["b2"] == 0 || len(seen) != 2 {
		t.Fatalf("round robin over b1 and b2 answered %v; want both", seen)
	}

	caddy.ReloadWith(t, proxyToUpstreams, map[string]any{"upstreams": backends[0].Addr})
	if seen := answering(t, caddy, 10); seen["b1"] != 10 {
		t.Fatalf("after reload to b1 only, answered %v; want b1 10 times", seen)
	}

	caddy.Kill()
	if _, err := NewClient().Get(caddy.URL("/whoami")); err == nil {
		t.Fatal("killed Caddy still answers")
	}
	caddy.Restart(t)
	// The restarted Caddy runs the reloaded config, not the first one.
	if seen := answering(t, caddy, 10); seen["b1"] != 10 {
		t.Fatalf("after restart, answered %v; want b1 10 times", seen)
	}
}

func TestCaddyReloadRejectsBadConfig(t *testing.T) {
	caddy := StartCaddy(t, `{
	{{.Global}}
}
:{{.HTTPPort}} {
	respond "v1"
}
`)
	// Reload fails the test on a rejected config; run it against a
	// recorder so the rejection can be asserted.
	rec := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		caddy.Reload(rec, "{\n\t{{.Global}}\n}\n:{{.HTTPPort}} {\n\tno_such_directive\n}\n")
	}()
	if !strings.Contains(rec.msg, "no_such_directive") {
		t.Fatalf("Reload of a bad config reported %q; want Caddy's error naming the directive", rec.msg)
	}
	if _, body := Get(t, NewClient(), caddy.URL("/")); body != "v1" {
		t.Fatalf("after a rejected reload Caddy answers %q; want the old config's v1", body)
	}
}

// fatalRecorder keeps the message of Fatalf instead of failing the test,
// and stops the caller the way Fatalf does (with a panic the caller
// recovers).
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(r)
}

func (r *fatalRecorder) Helper() {}

func TestBackendKillRestart(t *testing.T) {
	b := StartBackends(t, 1)[0]
	c := NewClient()
	resp, body := Get(t, c, b.URL("/anything"))
	if got := resp.Header.Get("X-Backend"); got != "b1" || body != "backend=b1 path=/anything\n" {
		t.Fatalf("direct GET: X-Backend %q, body %q", got, body)
	}
	b.Kill()
	if _, err := c.Get(b.URL("/health")); err == nil {
		t.Fatal("killed backend still answers")
	}
	b.Restart(t)
	if resp, _ := Get(t, c, b.URL("/health")); resp.StatusCode != http.StatusOK {
		t.Fatalf("restarted backend /health: %s", resp.Status)
	}
}

func TestLoadStopsAtCount(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errOdd := errors.New("odd")
	res := Load(ctx, 100, 4, func(i int) error {
		if i%2 == 1 {
			return errOdd
		}
		return nil
	})
	if res.Requests != 100 || res.Successes != 50 || res.Failures != 50 {
		t.Fatalf("got %v; want 100 requests, 50 ok, 50 failed", res)
	}
	if len(res.Errors) != maxLoadErrors || !errors.Is(res.Errors[0], errOdd) {
		t.Fatalf("got errors %v; want the first %d, wrapping %v", res.Errors, maxLoadErrors, errOdd)
	}
}

func TestLoadStopsAtDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res := Load(ctx, 1_000_000, 4, func(int) error {
		time.Sleep(5 * time.Millisecond)
		return nil
	})
	if res.Requests >= 1_000_000 || res.Requests == 0 {
		t.Fatalf("got %v; want the deadline to stop it after some requests", res)
	}
	if res.Elapsed > 2*time.Second {
		t.Fatalf("took %s; want it to stop near the 200ms deadline", res.Elapsed)
	}
}

func TestLoadThroughCaddy(t *testing.T) {
	backends := StartBackends(t, 2)
	caddy := StartCaddyWith(t, proxyToUpstreams, map[string]any{"upstreams": Upstreams(backends)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := NewClient()
	res := Load(ctx, 200, 8, func(int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, caddy.URL("/health"), nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
	if res.Successes != 200 {
		t.Fatalf("got %v; want all 200 ok", res)
	}
}

func TestNewClientKeepsCookiesPerUserAndDoesNotFollowRedirects(t *testing.T) {
	b := StartBackends(t, 1)[0]
	alice, bob := NewClient(), NewClient()
	Get(t, alice, b.URL("/login"))

	var who struct {
		Session string
		Known   bool
	}
	_, body := Get(t, alice, b.URL("/whoami"))
	if err := json.Unmarshal([]byte(body), &who); err != nil || !who.Known {
		t.Fatalf("alice after login: %s (%v); want a known session", body, err)
	}
	_, body = Get(t, bob, b.URL("/whoami"))
	if err := json.Unmarshal([]byte(body), &who); err != nil || who.Session != "" {
		t.Fatalf("bob: %s (%v); want no session: jars must not be shared", body, err)
	}

	resp, _ := Get(t, alice, b.URL("/redirect"))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET /redirect: %s; want the 302 itself, not the redirect followed", resp.Status)
	}
}

func TestBackendStopFinishesRequestsInFlight(t *testing.T) {
	b := StartBackends(t, 1)[0]
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := NewClient().Get(b.URL("/slow?ms=1000"))
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	time.Sleep(300 * time.Millisecond) // let the backend accept the request
	b.Stop()
	if r := <-done; r.err != nil || r.status != http.StatusOK {
		t.Fatalf("request in flight during SIGTERM: status %d, error %v; want 200", r.status, r.err)
	}
	if !strings.Contains(b.Log(), "exit: <nil>") {
		t.Fatalf("backend did not exit cleanly on SIGTERM:\n%s", b.Log())
	}
}
