package sessionstore

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/caddylb/caddylb/internal/testproc"
)

func TestMemoryConformance(t *testing.T) {
	testBackendConformance(t, func(t *testing.T) Backend {
		m := new(MemoryBackend)
		m.open("t-" + t.Name())
		t.Cleanup(func() { _ = m.Cleanup() })
		return m
	})
}

func TestRedisConformance(t *testing.T) {
	srv := testproc.StartRedis(t)
	testBackendConformance(t, func(t *testing.T) Backend {
		return newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = t.Name() + ":" })
	})
}

func TestMemcachedConformance(t *testing.T) {
	srv := testproc.StartMemcached(t)
	testBackendConformance(t, func(t *testing.T) Backend {
		m := newTestMemcached(t, srv.Addr, func(m *MemcachedBackend) { m.KeyPrefix = t.Name() + ":" })
		// Count in one-second windows so the expiry case runs in seconds.
		m.conn.counters.window = time.Second
		return m
	})
}

// testBackendConformance checks the Backend contract on fresh backends made
// by newBackend, one per case.
func testBackendConformance(t *testing.T, newBackend func(t *testing.T) Backend) {
	ctx := context.Background()

	mustGet := func(t *testing.T, be Backend, key string, want Binding) {
		t.Helper()
		got, err := be.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get(%q): %v, want %v", key, err, want)
		}
		if !sameBinding(got, want) {
			t.Fatalf("Get(%q) = %+v, want %+v", key, got, want)
		}
	}
	mustMiss := func(t *testing.T, be Backend, key string) {
		t.Helper()
		if got, err := be.Get(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", key, got, err)
		}
	}
	mustAdd := func(t *testing.T, be Backend, key string, b Binding) {
		t.Helper()
		cur, added, err := be.Add(ctx, key, b)
		if err != nil || !added || !sameBinding(cur, b) {
			t.Fatalf("Add(%q, %+v) = %+v, %v, %v; want it added", key, b, cur, added, err)
		}
	}

	cases := []struct {
		name string
		run  func(t *testing.T, be Backend)
	}{
		{"get missing", func(t *testing.T, be Backend) {
			mustMiss(t, be, "nobody")
		}},
		{"add on empty adds", func(t *testing.T, be Backend) {
			b := bindingFor("10.0.0.1:80", time.Minute)
			mustAdd(t, be, "k", b)
			mustGet(t, be, "k", b)
		}},
		{"add on live returns the existing", func(t *testing.T, be Backend) {
			first := bindingFor("10.0.0.1:80", time.Minute)
			mustAdd(t, be, "k", first)
			cur, added, err := be.Add(ctx, "k", bindingFor("10.0.0.2:80", time.Minute))
			if err != nil || added || !sameBinding(cur, first) {
				t.Fatalf("second Add = %+v, %v, %v; want %+v, false", cur, added, err, first)
			}
			mustGet(t, be, "k", first)
		}},
		{"swap from the right upstream swaps", func(t *testing.T, be Backend) {
			mustAdd(t, be, "k", bindingFor("a:1", time.Minute))
			next := bindingFor("b:1", time.Minute)
			cur, swapped, err := be.Swap(ctx, "k", "a:1", next)
			if err != nil || !swapped || !sameBinding(cur, next) {
				t.Fatalf("Swap = %+v, %v, %v; want %+v, true", cur, swapped, err, next)
			}
			mustGet(t, be, "k", next)
		}},
		{"swap from a wrong upstream returns the current", func(t *testing.T, be Backend) {
			first := bindingFor("a:1", time.Minute)
			mustAdd(t, be, "k", first)
			cur, swapped, err := be.Swap(ctx, "k", "c:1", bindingFor("b:1", time.Minute))
			if err != nil || swapped || !sameBinding(cur, first) {
				t.Fatalf("Swap = %+v, %v, %v; want %+v, false", cur, swapped, err, first)
			}
			mustGet(t, be, "k", first)
		}},
		{"swap on missing adds", func(t *testing.T, be Backend) {
			next := bindingFor("b:1", time.Minute)
			cur, swapped, err := be.Swap(ctx, "k", "a:1", next)
			if err != nil || !swapped || !sameBinding(cur, next) {
				t.Fatalf("Swap = %+v, %v, %v; want %+v, true", cur, swapped, err, next)
			}
			mustGet(t, be, "k", next)
		}},
		{"put overwrites", func(t *testing.T, be Backend) {
			mustAdd(t, be, "k", bindingFor("a:1", time.Minute))
			next := bindingFor("b:1", 2*time.Minute)
			if err := be.Put(ctx, "k", next); err != nil {
				t.Fatal(err)
			}
			mustGet(t, be, "k", next)
		}},
		{"delete", func(t *testing.T, be Backend) {
			mustAdd(t, be, "k", bindingFor("a:1", time.Minute))
			if err := be.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			mustMiss(t, be, "k")
			if err := be.Delete(ctx, "never-there"); err != nil {
				t.Fatalf("deleting a missing key: %v", err)
			}
		}},
		{"expiry", func(t *testing.T, be Backend) {
			short := bindingFor("a:1", 300*time.Millisecond)
			mustAdd(t, be, "k", short)
			mustGet(t, be, "k", short)
			time.Sleep(time.Until(short.Expires) + 20*time.Millisecond)
			mustMiss(t, be, "k")
			// An expired binding no longer blocks Add or Swap, even where
			// the server keeps the item a little longer (memcached).
			next := bindingFor("b:1", time.Minute)
			mustAdd(t, be, "k", next)
			mustGet(t, be, "k", next)
			short2 := bindingFor("a:1", 300*time.Millisecond)
			mustAdd(t, be, "k2", short2)
			time.Sleep(time.Until(short2.Expires) + 20*time.Millisecond)
			cur, swapped, err := be.Swap(ctx, "k2", "z:1", next)
			if err != nil || !swapped || !sameBinding(cur, next) {
				t.Fatalf("Swap over an expired binding = %+v, %v, %v; want it swapped", cur, swapped, err)
			}
		}},
		{"drain set and unset", func(t *testing.T, be Backend) {
			wantDraining(t, be, nil)
			for _, step := range []struct {
				up  string
				on  bool
				now []string
			}{
				{"a:1", true, []string{"a:1"}},
				{"b:1", true, []string{"a:1", "b:1"}},
				{"b:1", true, []string{"a:1", "b:1"}}, // twice is fine
				{"a:1", false, []string{"b:1"}},
				{"c:1", false, []string{"b:1"}}, // unsetting an absent one is fine
			} {
				if err := be.SetDraining(ctx, step.up, step.on); err != nil {
					t.Fatalf("SetDraining(%q, %v): %v", step.up, step.on, err)
				}
				wantDraining(t, be, step.now)
			}
			// While the set is unchanged, callers share one map.
			d1, _ := be.Draining(ctx)
			d2, _ := be.Draining(ctx)
			if reflect.ValueOf(d1).Pointer() != reflect.ValueOf(d2).Pointer() {
				t.Error("Draining allocated a new map for an unchanged set")
			}
		}},
		{"counts after binds, moves and deletes", func(t *testing.T, be Backend) {
			for _, k := range []string{"k1", "k2", "k3"} {
				mustAdd(t, be, k, bindingFor("a:1", time.Minute))
			}
			mustAdd(t, be, "k4", bindingFor("b:1", time.Minute))
			wantCounts(t, be, map[string]int64{"a:1": 3, "b:1": 1})

			if _, ok, err := be.Swap(ctx, "k1", "a:1", bindingFor("b:1", time.Minute)); err != nil || !ok {
				t.Fatalf("moving k1: %v, %v", ok, err)
			}
			if err := be.Put(ctx, "k2", bindingFor("c:1", time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := be.Delete(ctx, "k3"); err != nil {
				t.Fatal(err)
			}
			// Refreshing a binding in place does not count it twice.
			if _, ok, err := be.Swap(ctx, "k4", "b:1", bindingFor("b:1", 5*time.Minute)); err != nil || !ok {
				t.Fatalf("refreshing k4: %v, %v", ok, err)
			}
			if err := be.Put(ctx, "k2", bindingFor("c:1", 5*time.Minute)); err != nil {
				t.Fatal(err)
			}
			// Losing calls change nothing.
			_, _, _ = be.Add(ctx, "k1", bindingFor("a:1", time.Minute))
			_, _, _ = be.Swap(ctx, "k1", "a:1", bindingFor("c:1", time.Minute))
			wantCounts(t, be, map[string]int64{"b:1": 2, "c:1": 1})
		}},
		{"counts drop expired bindings", func(t *testing.T, be Backend) {
			mustAdd(t, be, "long", bindingFor("a:1", time.Minute))
			short := bindingFor("a:1", 300*time.Millisecond)
			mustAdd(t, be, "short", short)
			wantCounts(t, be, map[string]int64{"a:1": 2})
			// Memory and Redis drop it at once; memcached by the end of
			// the counting window after its expiry (one second here).
			time.Sleep(time.Until(short.Expires))
			deadline := time.Now().Add(3 * time.Second)
			for {
				c, err := be.Counts(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if maps.Equal(c, map[string]int64{"a:1": 1}) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Counts = %v three seconds after a binding expired, want a:1=1", c)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}},
		{"concurrent adds agree on one binding", func(t *testing.T, be Backend) {
			raceOne(t, "Add", func(i int) (Binding, bool, error) {
				return be.Add(ctx, "race", bindingFor(string(rune('a'+i))+":1", time.Minute))
			})
		}},
		{"concurrent swaps agree on one binding", func(t *testing.T, be Backend) {
			mustAdd(t, be, "race", bindingFor("down:1", time.Minute))
			results := raceOne(t, "Swap", func(i int) (Binding, bool, error) {
				return be.Swap(ctx, "race", "down:1", bindingFor(string(rune('a'+i))+":1", time.Minute))
			})
			wantCounts(t, be, map[string]int64{results[0].Upstream: 1})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newBackend(t))
		})
	}
}

// raceOne runs op from 8 goroutines at once and checks that exactly one
// wins and that every caller sees the same binding in force afterwards.
func raceOne(t *testing.T, name string, op func(i int) (Binding, bool, error)) []Binding {
	t.Helper()
	const n = 8
	results := make([]Binding, n)
	var wins int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cur, won, err := op(i)
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			mu.Lock()
			defer mu.Unlock()
			results[i] = cur
			if won {
				wins++
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent %ss won, want 1", wins, name)
	}
	for _, r := range results {
		if r.Upstream != results[0].Upstream {
			t.Fatalf("concurrent %ss disagree: %+v", name, results)
		}
	}
	return results
}
