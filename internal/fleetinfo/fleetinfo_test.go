package fleetinfo

import (
	"context"
	"testing"
	"time"
)

// TestPublishedPerConfig: fingerprints and load sources belong to the
// config (context) they were published in, and go with it.
func TestPublishedPerConfig(t *testing.T) {
	one, cancelOne := context.WithCancel(context.Background())
	two, cancelTwo := context.WithCancel(context.Background())
	defer cancelTwo()
	derived := context.WithValue(one, struct{}{}, "x") // shares one's Done
	Publish(one, "b.setting", "scope", "v1")
	Publish(derived, "a.setting", "scope", "v2")
	Publish(two, "a.setting", "scope", "other")
	PublishLoad(one, "s", func() map[string]int { return map[string]int{"u:1": 3} })
	got := Of(one)
	if len(got) != 2 || got[0].Setting != "a.setting" || got[1].Value != "v1" {
		t.Fatalf("Of(one) = %+v", got)
	}
	if got := Of(two); len(got) != 1 || got[0].Value != "other" {
		t.Fatalf("Of(two) = %+v", got)
	}
	if l := Load(derived, "s"); l["u:1"] != 3 {
		t.Fatalf("Load = %v", l)
	}
	cancelOne()
	deadline := time.Now().Add(2 * time.Second)
	for len(Of(one)) != 0 || len(Load(one, "s")) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("an unloaded config's fingerprints stay")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(Of(two)) != 1 {
		t.Fatal("another config's fingerprints went too")
	}
}

func TestSelfIsStable(t *testing.T) {
	if Self().ID == "" || Self() != Self() {
		t.Fatalf("Self() = %+v", Self())
	}
}
