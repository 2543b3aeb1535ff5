package lbstats

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func TestTrackSettlesOnlyEndedRequests(t *testing.T) {
	var settled atomic.Int32
	ended, end := context.WithCancel(context.Background())
	live, stop := context.WithCancel(context.Background())
	defer stop()
	Track(ended, settlerFunc(func() { settled.Add(1) }))
	Track(live, settlerFunc(func() { settled.Add(100) }))
	Settle()
	if n := settled.Load(); n != 0 {
		t.Fatalf("settled %d before any request ended", n)
	}
	end()
	Settle()
	if n := settled.Load(); n != 1 {
		t.Fatalf("settled %d, want the ended request alone (1)", n)
	}
	Settle()
	if n := settled.Load(); n != 1 {
		t.Fatalf("settled %d after a second pass, want 1: each request once", n)
	}
	stop()
	// The background sweep settles it without a Settle call.
	deadline := time.Now().Add(5 * time.Second)
	for settled.Load() != 101 {
		if time.Now().After(deadline) {
			t.Fatalf("the sweep did not settle the second request: %d", settled.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTrackPastTheBoundRefuses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tracker.mu.Lock()
	saved := tracker.pending
	tracker.pending = make([]tracked, maxTracked)
	for i := range tracker.pending {
		tracker.pending[i] = tracked{ctx, settlerFunc(func() {})}
	}
	tracker.mu.Unlock()
	defer func() {
		tracker.mu.Lock()
		tracker.pending = saved
		tracker.mu.Unlock()
	}()
	done := false
	if Track(ctx, settlerFunc(func() { done = true })) {
		t.Fatal("a request past the bound was tracked")
	}
	if done {
		t.Fatal("a request past the bound was settled before it ended")
	}
}

func TestUpstreamTableIsBounded(t *testing.T) {
	first := UpstreamCounters("10.0.0.1:80")
	if UpstreamCounters("10.0.0.1:80") != first {
		t.Fatal("one address got two counters")
	}
	for i := 0; i < maxKeys+10; i++ {
		UpstreamCounters(fmt.Sprintf("10.1.%d.%d:80", i/256, i%256))
	}
	over := UpstreamCounters("10.255.255.255:80")
	if over != UpstreamCounters(Overflow) {
		t.Fatal("an address past the bound did not share the overflow entry")
	}
	n := 0
	EachUpstream(func(string, *Upstream) { n++ })
	if n > maxKeys+1 {
		t.Fatalf("%d entries, want at most %d", n, maxKeys+1)
	}
}

func TestPolicyOutcomesOutliveReload(t *testing.T) {
	names := []string{"hit", "new"}
	name := fmt.Sprintf("mem cookie:x %d", time.Now().UnixNano()) // the table outlives -count runs
	o := PolicyOutcomes(name, names)
	o.Add(1)
	o.Add(1)
	again := PolicyOutcomes(name, names) // the same policy after a reload
	again.Add(0)
	got := again.Snapshot()
	if got["new"] != 2 || got["hit"] != 1 {
		t.Fatalf("outcomes %v, want hit 1 new 2", got)
	}
	// Another kind of policy with the same name and other outcomes gets
	// an entry of its own; no index of one reaches the other's counts.
	other := PolicyOutcomes(name, []string{"a", "b", "c", "d", "e", "f", "g", "h"})
	other.Add(7)
	other.Add(99)
	other.Add(-1)
	if got := other.Snapshot(); got["h"] != 1 || len(got) != 8 {
		t.Fatalf("the other kind's outcomes %v", got)
	}
	if got := again.Snapshot(); got["new"] != 2 || got["hit"] != 1 {
		t.Fatalf("the first kind's outcomes changed: %v", got)
	}
	var nilOutcomes *Outcomes
	nilOutcomes.Add(0) // an unprovisioned policy counts nothing, without a panic
	if nilOutcomes.Snapshot() != nil {
		t.Fatal("nil outcomes have a snapshot")
	}
}

// A Settle from another reader that overlaps a sweep must not leave
// requests pending with no sweeper: the sweep may find nothing and stop
// while Settle holds the batch.
func TestSettleDuringSweepKeepsSweeping(t *testing.T) {
	live, stop := context.WithCancel(context.Background())
	var settled atomic.Int32
	Track(live, settlerFunc(func() { settled.Add(1) }))
	// What a concurrent sweep does while Settle holds the batch: it
	// finds nothing and stops.
	tracker.mu.Lock()
	batch := tracker.pending
	tracker.pending = nil
	tracker.running = false
	tracker.mu.Unlock()
	tracker.mu.Lock()
	tracker.pending = append(batch, tracker.pending...)
	tracker.mu.Unlock()
	Settle() // puts back the live request: a sweeper must run for it
	stop()
	deadline := time.Now().Add(5 * time.Second)
	for settled.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no sweeper settled the request after Settle put it back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settlerFunc is a function as a Settler.
type settlerFunc func()

func (f settlerFunc) Settle() { f() }
