package perconfig

import (
	"context"
	"testing"
	"time"
)

// TestKeyNamesTheConfig: contexts derived with WithValue share their
// config's key; another config has another; state goes with its config.
func TestKeyNamesTheConfig(t *testing.T) {
	cfg, cancel := context.WithCancel(context.Background())
	other, cancelOther := context.WithCancel(context.Background())
	defer cancelOther()
	derived := context.WithValue(cfg, struct{}{}, 1)
	if Key(derived) != Key(cfg) || Key(cfg) == Key(other) {
		t.Fatal("Key does not name the config")
	}
	var m Map[*int]
	m.With(derived, func() *int { return new(int) }, func(n *int) { *n++ })
	m.With(cfg, func() *int { return new(int) }, func(n *int) { *n++ })
	m.Get(cfg, func(n *int, ok bool) {
		if !ok || *n != 2 {
			t.Fatalf("value of cfg: %v %v", n, ok)
		}
	})
	m.Get(other, func(_ *int, ok bool) {
		if ok {
			t.Fatal("another config sees cfg's value")
		}
	})
	cancel()
	deadline := time.Now().Add(2 * time.Second)
	for {
		gone := false
		m.Get(cfg, func(_ *int, ok bool) { gone = !ok })
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an unloaded config's value stays")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
