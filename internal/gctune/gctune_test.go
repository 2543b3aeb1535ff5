package gctune

import "testing"

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, maxPercent},
		{1, maxPercent},
		{Headroom / 1000, 100_000},
		{4 << 20, 800}, // 4 MiB live: collect after 32 MiB more
		{8 << 20, 400},
		{16 << 20, 200},
		{Headroom - 1, 100},
		{Headroom, 100},
		{1 << 30, 100}, // a large store: GOGC=100's target
	} {
		got := Percent(tc.live)
		if got != tc.want {
			t.Errorf("Percent(%d) = %d, want %d", tc.live, got, tc.want)
		}
		// The target never leaves less than Headroom to grow into, and
		// never more than the larger of Headroom and the live heap.
		if tc.live > 0 && got < maxPercent {
			growth := tc.live * uint64(got) / 100
			if growth+tc.live/50 < Headroom && tc.live < Headroom {
				t.Errorf("live %d: GOGC %d leaves %d to grow into, less than Headroom", tc.live, got, growth)
			}
			if lim := max(uint64(Headroom), tc.live); growth > lim+lim/50 {
				t.Errorf("live %d: GOGC %d lets the heap grow by %d, more than %d", tc.live, got, growth, lim)
			}
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
		{800, 880, false},
		{800, 900, true},
		{100, 800, true},
	} {
		if got := worthSetting(tc.p, tc.current); got != tc.want {
			t.Errorf("worthSetting(%d, %d) = %v, want %v", tc.p, tc.current, got, tc.want)
		}
	}
}

func TestStartLeavesAnOperatorsGOGC(t *testing.T) {
	t.Setenv("GOGC", "150")
	if Start() {
		t.Fatal("Start tunes GOGC although the environment sets it")
	}
}
