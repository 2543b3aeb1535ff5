// Package gctune sets the garbage collector's target so that a process
// with a small live heap does not collect every few hundred requests.
//
// Go collects when the heap has grown by GOGC percent of what was live
// after the last cycle. A load balancer's live heap is small (a few MiB
// plus its session store) while each request allocates about 23 KiB, so
// at GOGC=100 it collects dozens of times a second, and the collector is
// a fifth of its instructions (BENCHMARKS.md, "Production settings").
// Tune keeps the target at the live heap plus at least Headroom: the
// collector runs once per Headroom allocated, and the memory it costs is
// bounded by that constant. Once the live heap is larger than Headroom
// (a large memory store), the target is GOGC=100's again.
package gctune

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Headroom is the least the heap may grow by between two collections.
const Headroom = 32 << 20

// every is how often the live heap is looked at.
const every = time.Second

// maxPercent bounds the setting for a nearly empty heap (at start-up).
const maxPercent = 100_000

// Percent is the GOGC for a live heap of live bytes: 100, or more where
// 100 would leave less than Headroom to grow into.
func Percent(live uint64) int {
	if live >= Headroom {
		return 100
	}
	if live == 0 {
		return maxPercent
	}
	return int(min(Headroom*100/live, maxPercent))
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

// Start tunes GOGC from now on, unless GOGC is set in the environment
// (the operator's choice wins); it reports whether it does.
func Start() bool {
	if os.Getenv("GOGC") != "" {
		return false
	}
	go func() {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		current := 100
		for {
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				if p := Percent(sample[0].Value.Uint64()); worthSetting(p, current) {
					debug.SetGCPercent(p)
					current = p
				}
			}
			time.Sleep(every)
		}
	}()
	return true
}
