package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
)

// reloadSite is a caddy-lb route whose config changes on every reload
// (the respond text), so each load really replaces the servers.
const reloadSite = `{
	{{.Global}}
}

:{{.HTTPPort}} {
	forwarded {
		trusted_proxies 127.0.0.9/32
	}
	handle /gen {
		respond "{{.X.gen}}"
	}
	reverse_proxy {{.X.upstreams}}
}
`

// closedUnanswered tells whether err is a request whose connection the
// server closed before any byte of the answer (not a reset).
func closedUnanswered(err error) bool {
	return errors.Is(err, io.EOF) || strings.HasSuffix(err.Error(), ": EOF")
}

// TestReloadUnderLoadResetsNoQueuedConnection opens a new connection for
// every request while the config is reloaded ten times: the worst case for
// a reload on Linux, where the kernel spreads the new connections of the
// moment over the old and the new listener and resets those still queued
// on the old one when it closes, unless net.ipv4.tcp_migrate_req is 1
// (docs/tuning.md; make deps sets it). With it set, no request is reset.
// A connection the old server had accepted but not yet read a request from
// when its shutdown began is closed without an answer (net/http, see
// docs/tuning.md): those are counted and reported, and bounded.
func TestReloadUnderLoadResetsNoQueuedConnection(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	if err != nil {
		t.Fatalf("reading the kernel's tcp_migrate_req (Linux 5.14 or later): %v", err)
	}
	if v := strings.TrimSpace(string(b)); v != "1" {
		t.Fatalf("net.ipv4.tcp_migrate_req is %s; make deps sets it to 1, as docs/tuning.md tells users to", v)
	}
	backends := harness.StartBackends(t, 2)
	data := map[string]any{"upstreams": harness.Upstreams(backends), "gen": "gen 0"}
	caddy := harness.StartCaddyWith(t, reloadSite, data)
	if strings.Contains(caddy.Log(), "tcp_migrate_req is 0") {
		t.Fatalf("Caddy warns that tcp_migrate_req is 0 while it is 1:\n%s", caddy.Log())
	}

	const reloads = 10
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		for i := 1; i <= reloads; i++ {
			time.Sleep(150 * time.Millisecond)
			caddy.ReloadWith(t, reloadSite, map[string]any{"upstreams": data["upstreams"], "gen": fmt.Sprintf("gen %d", i)})
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	// A reset of a connection the kernel had queued (the client has sent
	// its request and reads) is what the setting prevents: a failure. A
	// reset during the handshake itself (connect fails) is a SYN that met
	// the old socket in the instant it closed: rare, counted and bounded.
	var resets, handshakeResets, unanswered atomic.Int64
	res := loadUntil(reloaded, 8, func(ctx context.Context, i int) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, caddy.URL("/whoami"), nil)
		resp, err := client.Do(req)
		if err != nil {
			var op *net.OpError
			switch {
			case errors.Is(err, syscall.ECONNRESET) && errors.As(err, &op) && op.Op == "dial":
				handshakeResets.Add(1)
				return nil
			case errors.Is(err, syscall.ECONNRESET):
				resets.Add(1)
			case closedUnanswered(err):
				unanswered.Add(1)
				return nil
			}
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	t.Logf("%d reloads, a new connection per request: %v; %d reset after being queued, %d during the handshake, %d closed without an answer",
		reloads, res, resets.Load(), handshakeResets.Load(), unanswered.Load())
	if res.Failures > 0 || res.Successes < 1000 {
		t.Fatalf("during reloads: %v", res)
	}
	if n := handshakeResets.Load(); n > 3 {
		t.Fatalf("%d connections reset during their handshake in %d reloads; the instant a socket closes catches one at most now and then", n, reloads)
	}
	if n := unanswered.Load(); n > 10*reloads {
		t.Fatalf("%d requests closed without an answer in %d reloads; the race net/http leaves is a few per reload", n, reloads)
	}
	_, body := harness.Get(t, harness.NewClient(), caddy.URL("/gen"))
	if body != fmt.Sprintf("gen %d", reloads) {
		t.Fatalf("after %d reloads /gen answers %q", reloads, body)
	}
}
