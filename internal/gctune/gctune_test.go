package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		live, roots uint64
		want        int
	}{
		{0, 0, 0},               // not measured yet: leave it
		{1, 0, 800},             // the minimum heap bounds it: 4 MiB * 8 = 32 MiB
		{1 << 20, 0, 825},       // as above
		{4 << 20, 0, 800},       // 4 MiB live: collect after 32 MiB more
		{4 << 20, 4 << 20, 400}, // stacks and globals are scaled too
		{8 << 20, 0, 400},
		{16 << 20, 0, 200},
		{Headroom - 1, 0, 100},
		{Headroom, 0, 100},
		{1 << 30, 0, 100}, // a large store: GOGC=100's target
	} {
		if got := Percent(tc.live, tc.roots); got != tc.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", tc.live, tc.roots, got, tc.want)
		}
	}
}

func TestWorthSetting(t *testing.T) {
	for _, tc := range []struct {
		p, current int
		want       bool
	}{
		{100, 100, false},
		{105, 100, false},
		{111, 100, true},
		{880, 800, false},
		{900, 800, true},
		{799, 800, true}, // lowering it always: the bound must hold
		{100, 800, true},
	} {
		if got := worthSetting(tc.p, tc.current); got != tc.want {
			t.Errorf("worthSetting(%d, %d) = %v, want %v", tc.p, tc.current, got, tc.want)
		}
	}
}

func read(names ...string) []uint64 {
	s := make([]metrics.Sample, len(names))
	for i, n := range names {
		s[i].Name = n
	}
	metrics.Read(s)
	v := make([]uint64, len(s))
	for i := range s {
		v[i] = s[i].Value.Uint64()
	}
	return v
}

// TestTuneSetsTheRuntimesGoal checks the setting against the goal the
// runtime itself computes from it, for a small and a large live heap.
func TestTuneSetsTheRuntimesGoal(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	var keep [][]byte
	for _, live := range []int{2 << 20, 64 << 20} {
		keep = append(keep[:0], make([]byte, live))
		runtime.GC()
		tune()
		v := read("/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes", "/gc/heap/goal:bytes", "/gc/gogc:percent")
		marked, goal, gogc := v[0], v[3], int(v[4])
		grow := int64(goal) - int64(marked)
		t.Logf("live %d MiB: GOGC %d, goal %d MiB, growth %d MiB", marked>>20, gogc, goal>>20, grow>>20)
		if marked < Headroom {
			if grow < Headroom*9/10 || grow > Headroom*11/10 {
				t.Errorf("live %d: the heap may grow by %d before the next cycle, want about Headroom (%d)", marked, grow, Headroom)
			}
		} else {
			if gogc != 100 {
				t.Errorf("live %d: GOGC %d, want 100 for a heap larger than Headroom", marked, gogc)
			}
			if grow > int64(marked)*11/10+int64(v[1]+v[2]) {
				t.Errorf("live %d: growth %d is more than GOGC=100 allows", marked, grow)
			}
		}
	}
	runtime.KeepAlive(keep)
}

func TestCleanupRetunesAfterCycles(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	arm()
	var p uint64
	for range 20 { // the cleanup runs on its own goroutine after a cycle
		runtime.GC()
		runtime.Gosched()
		if p = read("/gc/gogc:percent")[0]; p != 100 {
			break
		}
	}
	if p == 100 {
		t.Fatal("after 20 collections of a small heap GOGC is still 100: the cleanup never tuned it")
	}
}

func TestTuneFollowsAnotherSetting(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	runtime.GC()
	tune()
	debug.SetGCPercent(100) // someone else resets it
	tune()
	if p := read("/gc/gogc:percent")[0]; p == 100 {
		t.Fatal("tune left GOGC at 100 after another setting replaced its own")
	}
	debug.SetGCPercent(-1)
	tune()
	if p := int32(read("/gc/gogc:percent")[0]); p != -1 {
		t.Fatalf("tune turned a collector that was off back on (GOGC %d)", p)
	}
}

func TestStartLeavesAnOperatorsGOGC(t *testing.T) {
	t.Setenv("GOGC", "150")
	if Start() {
		t.Fatal("Start tunes GOGC although the environment sets it")
	}
}
