package sessionstore

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestMemoryMaxBindings(t *testing.T) {
	m := &MemoryBackend{MaxBindings: 2}
	m.open("t-" + t.Name())
	t.Cleanup(func() { _ = m.Cleanup() })
	ctx := context.Background()
	b := Binding{Upstream: "a:1", Expires: time.Now().Add(time.Hour)}
	for i := range 2 {
		if _, added, err := m.Add(ctx, "k"+strconv.Itoa(i), b); err != nil || !added {
			t.Fatalf("add %d: %v %v", i, added, err)
		}
	}
	if _, _, err := m.Add(ctx, "k2", b); !errors.Is(err, ErrFull) {
		t.Fatalf("third add: %v, want ErrFull", err)
	}
	if err := m.Put(ctx, "k3", b); !errors.Is(err, ErrFull) {
		t.Fatalf("put past the limit: %v, want ErrFull", err)
	}
	// Existing keys still update when full.
	if _, swapped, err := m.Swap(ctx, "k0", "a:1", Binding{Upstream: "b:1", Expires: b.Expires}); err != nil || !swapped {
		t.Fatalf("swap when full: %v %v", swapped, err)
	}
	if err := m.Delete(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if _, added, err := m.Add(ctx, "k2", b); err != nil || !added {
		t.Fatalf("add after a delete: %v %v", added, err)
	}
}
