// Package gctune sets the garbage collector's target so that a process
// with a small live heap does not collect every few hundred requests.
//
// Go collects when the heap has grown by GOGC percent of what the last
// cycle found live (plus the goroutine stacks and globals it scanned),
// and never below a minimum heap of 4 MiB times GOGC/100. A load
// balancer's live heap is a few MiB plus its session store while each
// request allocates about 23 KiB, so at GOGC=100 it collects dozens of
// times a second; the collector is about a fifth of its instructions
// (BENCHMARKS.md, "Production settings"). Start sets GOGC after each
// cycle (and every second) so that the heap may grow by Headroom before
// the next one: in steady state the collector runs once per Headroom
// allocated, and the memory this costs over GOGC=100 is at most
// Headroom. A heap that grows fast is collected once at the target set
// before it grew. Once what the collector scans is larger than Headroom
// (a large memory store), GOGC is 100 again.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
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

// worthSetting tells whether to replace the current setting with p: always
// to lower it (the bound must hold), and to raise it only by more than a
// tenth, so that a live heap wobbling between cycles does not reset it
// every time.
func worthSetting(p, current int) bool {
	return p < current || (p-current)*10 > current
}

// tune sets GOGC from what the last cycle measured, against the setting
// the runtime has now (whoever made it). A collector turned off
// (debug.SetGCPercent(-1)) is left off. Safe to call from several
// goroutines: each call reads its own samples.
func tune() {
	samples := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
		{Name: "/gc/gogc:percent"},
	}
	metrics.Read(samples)
	var v [4]uint64
	for i, s := range samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return // a Go without these metrics: leave GOGC alone
		}
		v[i] = s.Value.Uint64()
	}
	current := int(int32(v[3])) // off reads as the uint64 of int32(-1)
	if current < 0 {
		return
	}
	if p := Percent(v[0], v[1]+v[2]); p != 0 && worthSetting(p, current) {
		debug.SetGCPercent(p)
	}
}

// sentinel is garbage the moment it is made: its cleanup runs after a
// later cycle (once that cycle has swept), tunes, and makes the next one.
type sentinel struct{ _ [16]byte }

func arm() {
	runtime.AddCleanup(new(sentinel), func(struct{}) {
		tune()
		arm()
	}, struct{}{})
}

// backstop is how often tune also runs on a timer: a cleanup runs late
// when sweeping is slow or other cleanups queue before it.
const backstop = time.Second

// Start tunes GOGC after collections (and every second) from now on, unless GOGC is set
// in the environment (the operator's choice wins, "off" included); it
// reports whether it does.
func Start() bool {
	if os.Getenv("GOGC") != "" {
		return false
	}
	arm()
	go func() {
		for range time.Tick(backstop) {
			tune()
		}
	}()
	return true
}
