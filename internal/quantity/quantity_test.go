package quantity

import (
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"10MiB": 10 << 20, "1GB": 1e9, "512KB": 512e3, "5242880": 5242880, "1 KiB": 1024, "1PiB": 1 << 50, "2PiB": 2 << 50} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0B", "-1", "ten", "8EiB", "99999999999999999999", "1.5.3MB", "MiB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"250ms": 250 * time.Millisecond, "1m": time.Minute, "1d": 24 * time.Hour} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0s", "-1s", "soon", "1"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestOrDefaultTakesZero(t *testing.T) {
	if n, err := ParseSizeOrDefault("0"); err != nil || n != 0 {
		t.Fatalf("ParseSizeOrDefault(0) = %d %v", n, err)
	}
	if n, err := ParseSizeOrDefault("8MiB"); err != nil || n != 8<<20 {
		t.Fatalf("ParseSizeOrDefault(8MiB) = %d %v", n, err)
	}
	if d, err := ParseDurationOrDefault("0s"); err != nil || d != 0 {
		t.Fatalf("ParseDurationOrDefault(0s) = %v %v", d, err)
	}
	for _, bad := range []string{"-1s", "soon"} {
		if _, err := ParseDurationOrDefault(bad); err == nil {
			t.Fatalf("ParseDurationOrDefault(%q) accepted", bad)
		}
	}
	if _, err := ParseSizeOrDefault("-1"); err == nil {
		t.Fatal("ParseSizeOrDefault(-1) accepted")
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"10MiB", "0", "1PiB", "-5", "1e3KB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && (n <= 0 || n > MaxSize) {
			t.Fatalf("ParseSize(%q) = %d out of range", s, n)
		}
	})
}
