package sessionstore

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestMemoryMaxBindingsEvictsTheLeastRecentlyUsed(t *testing.T) {
	m := &MemoryBackend{MaxBindings: 3}
	m.open("t-" + t.Name())
	t.Cleanup(func() { _ = m.Cleanup() })
	tbl := m.table
	evicted := metricValue(t, tbl.evictions)
	t0 := time.Now()
	b := Binding{Upstream: "a:1", Expires: t0.Add(time.Hour)}
	put := func(key string, at time.Duration) {
		t.Helper()
		if _, stored, err := tbl.update(key, t0.Add(at), func(Binding, bool) (Binding, bool) { return b, true }); err != nil || !stored {
			t.Fatalf("put %s: %v %v", key, stored, err)
		}
	}
	has := func(key string) bool {
		_, err := tbl.get(key, t0.Add(10*time.Second))
		return err == nil
	}
	put("k0", 0)
	put("k1", time.Second)
	put("k2", 2*time.Second)
	// A read moves k0 to the front (it is older than touchEvery).
	if _, err := tbl.get("k0", t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	put("k3", 4*time.Second) // full: evicts k1, the least recently used
	if has("k1") || !has("k0") || !has("k2") || !has("k3") {
		t.Fatalf("after k3: k0 %v k1 %v k2 %v k3 %v; want k1 evicted", has("k0"), has("k1"), has("k2"), has("k3"))
	}
	// An update of an existing key evicts nothing.
	put("k2", 5*time.Second)
	if tbl.size.Load() != 3 || !has("k0") || !has("k3") {
		t.Fatalf("size %d after updating a key", tbl.size.Load())
	}
	if got := metricValue(t, tbl.evictions) - evicted; got != 1 {
		t.Fatalf("%v evictions counted, want 1", got)
	}
	// A delete makes room without an eviction.
	_ = m.Delete(context.Background(), "k0")
	put("k4", 6*time.Second)
	if got := metricValue(t, tbl.evictions) - evicted; got != 1 || !has("k2") || !has("k3") || !has("k4") {
		t.Fatalf("after a delete and an add: %v evictions", got)
	}
}

// TestMemoryAnonymousSessionsDoNotPushOutReturningOnes: clients that
// start a session and never return, past max_bindings, make room for
// those that do, instead of refusing them.
func TestMemoryAnonymousSessionsDoNotPushOutReturningOnes(t *testing.T) {
	m := &MemoryBackend{MaxBindings: 200}
	m.open("t-" + t.Name())
	t.Cleanup(func() { _ = m.Cleanup() })
	ctx := context.Background()
	b := Binding{Upstream: "a:1", Expires: time.Now().Add(time.Hour)}
	for i := range 300 {
		if _, added, err := m.Add(ctx, "anon-"+strconv.Itoa(i), b); err != nil || !added {
			t.Fatalf("anonymous %d: %v %v", i, added, err)
		}
	}
	for i := range 20 {
		if err := m.Put(ctx, "user-"+strconv.Itoa(i), b); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	for i := range 20 {
		if _, err := m.Get(ctx, "user-"+strconv.Itoa(i)); err != nil {
			t.Fatalf("user %d lost their binding: %v", i, err)
		}
	}
	if n := m.table.size.Load(); n != 200 {
		t.Fatalf("%d bindings held, want 200", n)
	}
}

// metricValue reads a counter.
func metricValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
