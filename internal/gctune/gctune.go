// Package gctune sets the garbage collector's target so that a process
// with a small live heap does not collect every few hundred requests.
//
// Go collects when the heap has grown by GOGC percent of what the last
// cycle found live (plus the goroutine stacks and globals it scanned),
// and never below a minimum heap of 4 MiB times GOGC/100. A load
// balancer's live heap is a few MiB plus its session store while each
// request allocates about 23 KiB, so at GOGC=100 it collects dozens of
// times a second; the collector is about a fifth of its instructions
// (BENCHMARKS.md, "Production settings"). Tune sets GOGC after every
// cycle so that the heap may grow by Headroom before the next one: the
// collector runs once per Headroom allocated, and the memory this costs
// over GOGC=100 is at most Headroom. Once what the collector scans is
// larger than Headroom (a large memory store), GOGC is 100 again.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// Headroom is how much the heap may grow between two collections, at the
// least.
const Headroom = 32 << 20

// heapMinimum is Go's minimum heap target at GOGC=100.
const heapMinimum = 4 << 20

// Percent is the GOGC that lets the heap grow by Headroom past live
// bytes, given the bytes of stacks and globals the collector also
// scanned (it multiplies them by GOGC too): 100 where 100 already allows
// that much. The minimum heap, which GOGC scales, stays at or below the
// target that gives. 0 is returned for a heap not yet measured (live 0):
// leave the setting as it is.
func Percent(live, roots uint64) int {
	if live == 0 {
		return 0
	}
	scanned := live + roots
	if scanned >= Headroom {
		return 100
	}
	p := uint64(Headroom) * 100 / scanned
	// heapMinimum*p/100 <= live+Headroom
	p = min(p, (live+Headroom)*100/heapMinimum)
	return int(max(p, 100))
}

// worthSetting tells whether p differs enough from the current setting
// to set it: by a tenth, so that a live heap wobbling between cycles does
// not reset it every time.
func worthSetting(p, current int) bool {
	d := p - current
	if d < 0 {
		d = -d
	}
	return d*10 > current
}

var samples = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},
	{Name: "/gc/scan/stack:bytes"},
	{Name: "/gc/scan/globals:bytes"},
}

// tuner holds the setting last made; it is only touched by the cleanup
// that runs after each cycle, one at a time.
type tuner struct{ current int }

// tune sets GOGC from what the cycle that just ended measured.
func (t *tuner) tune() {
	metrics.Read(samples)
	var v [3]uint64
	for i, s := range samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return // a Go without these metrics: leave GOGC alone
		}
		v[i] = s.Value.Uint64()
	}
	if p := Percent(v[0], v[1]+v[2]); p != 0 && worthSetting(p, t.current) {
		debug.SetGCPercent(p)
		t.current = p
	}
}

// sentinel is garbage the moment it is made: its cleanup runs after the
// next cycle, tunes, and makes the next sentinel.
type sentinel struct{ _ [16]byte }

func (t *tuner) arm() {
	runtime.AddCleanup(new(sentinel), func(t *tuner) {
		t.tune()
		t.arm()
	}, t)
}

// Start tunes GOGC after every collection from now on, unless GOGC is set
// in the environment (the operator's choice wins, "off" included); it
// reports whether it does.
func Start() bool {
	if os.Getenv("GOGC") != "" {
		return false
	}
	t := &tuner{current: 100}
	t.arm()
	return true
}
