package sessionstore

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddylb/caddylb/internal/testproc"
)

// Fixtures shared by the backend tests.

// provisionForTest provisions a backend outside any config, as the App
// would, and cleans it up when the test ends.
func provisionForTest(t testing.TB, b interface {
	caddy.Provisioner
	caddy.CleanerUpper
}) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := b.Provision(ctx); err != nil {
		t.Fatalf("provisioning %T: %v", b, err)
	}
	t.Cleanup(func() {
		if err := b.Cleanup(); err != nil {
			t.Errorf("cleanup %T: %v", b, err)
		}
	})
	if v, ok := b.(caddy.Validator); ok {
		if err := v.Validate(); err != nil {
			t.Fatalf("validating %T: %v", b, err)
		}
	}
}

// bindingFor returns a binding to upstream that expires after ttl, at
// millisecond precision like the wire form, so that it compares equal after
// a round trip through any backend.
func bindingFor(upstream string, ttl time.Duration) Binding {
	return Binding{Upstream: upstream, Expires: time.Now().Add(ttl).Truncate(time.Millisecond)}
}

func sameBinding(a, b Binding) bool {
	return a.Upstream == b.Upstream && a.Expires.Equal(b.Expires)
}

// waitFor polls cond every 5ms until it holds or within passes, and logs
// how long it took.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not after %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
}

// testStoreOutage kills the server under a Store: calls fail fast, the
// breaker answers ErrUnavailable without waiting, and after a restart on
// the same port the backend reconnects by itself.
func testStoreOutage(t *testing.T, srv *testproc.Proc, be Backend) {
	ctx := context.Background()
	store := NewStore("outage", be, nil)
	if err := store.Put(ctx, "before", bindingFor("a:1", time.Hour)); err != nil {
		t.Fatal(err)
	}
	srv.Kill()

	start := time.Now()
	_, err := store.Get(ctx, "unread")
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("Get with the server down = %v, want an error", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("first failing call took %v, want at most about the 250ms timeout", took)
	}
	t.Logf("first call with the server down: %v after %v", err, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	for i := range 100 {
		_, err := store.Get(ctx, "unread")
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d while the breaker is open: %v, want ErrUnavailable", i, err)
		}
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("100 calls with the breaker open took %v; they should not wait", took)
	}
	if err := store.Put(ctx, "k", bindingFor("a:1", time.Hour)); err == nil {
		t.Fatal("Put succeeded with the server down")
	}

	srv.Restart(t)
	// Probes made for clients that already went away must not leave the
	// breaker stuck half-open: the store is asked all the same.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	for range 3 {
		time.Sleep(breakerMaxBackoff / 4)
		_, _ = store.Get(gone, "unread")
	}
	start = time.Now()
	for {
		err = store.Put(ctx, "after", bindingFor("b:1", time.Hour))
		if err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("store still failing 10s after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("store answered again %v after the restart", time.Since(start).Round(time.Millisecond))
	if b, err := store.Get(ctx, "after"); err != nil || b.Upstream != "b:1" {
		t.Fatalf("Get after the restart = %+v, %v", b, err)
	}
}

// unmarshalStoreOption parses a `session_store` global option line the way
// the caddyfile package does: the backend's UnmarshalCaddyfile sees the
// tokens from the backend name on.
func unmarshalStoreOption(input, moduleID string) (caddyfile.Unmarshaler, error) {
	d := caddyfile.NewTestDispenser(input)
	d.Next() // session_store
	d.NextArg()
	d.NextArg() // backend name
	return caddyfile.UnmarshalModule(d, moduleID)
}

func wantDraining(t *testing.T, be Backend, want []string) {
	t.Helper()
	got, err := be.Draining(context.Background())
	if err != nil {
		t.Fatalf("Draining: %v", err)
	}
	wantSet := make(map[string]bool)
	for _, up := range want {
		wantSet[up] = true
	}
	if !maps.Equal(got, wantSet) {
		t.Fatalf("Draining = %v, want %v", got, wantSet)
	}
}

func wantCounts(t *testing.T, be Backend, want map[string]int64) {
	t.Helper()
	got, err := be.Counts(context.Background())
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("Counts = %v, want %v", got, want)
	}
}
