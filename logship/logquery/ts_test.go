package logquery

import (
	"math"
	"strconv"
	"testing"
	"time"
)

func TestTimestamp(t *testing.T) {
	plus1 := time.FixedZone("", 3600)
	tests := []struct {
		line   string
		want   time.Time
		wantOK bool
	}{
		{accessLogLine, time.Unix(1764660826, 590123000), true},
		{`{"ts":1764660826.590123}`, time.UnixMicro(1764660826590123), true},
		{`{"ts":1764660826.5901232}`, time.Unix(1764660826, 590123200), true},
		{`{"ts":1764660826.1234567891}`, time.Unix(1764660826, 123456789), true}, // past ns: cut
		{`{"ts":1764660826}`, time.Unix(1764660826, 0), true},
		{`{"ts":0}`, time.Unix(0, 0), true},
		{`{"ts":-1.5}`, time.Unix(-2, 500000000), true},
		{`{"ts":1.7646608265e9}`, time.Unix(1764660826, 500000000), true},
		{`{"ts":123456789012345678}`, time.Unix(123456789012345678, 0), true},
		{`{"ts":1234567890123456789}`, time.Time{}, false},
		{`{"ts":1e300}`, time.Time{}, false},
		{`{"ts":"2026-12-02T07:13:46Z"}`, time.Date(2026, 12, 2, 7, 13, 46, 0, time.UTC), true},
		{`{"ts":"2026-12-02T07:13:46.590123Z"}`, time.Date(2026, 12, 2, 7, 13, 46, 590123000, time.UTC), true},
		{`{"ts":"2026-12-02T08:13:46.5+01:00"}`, time.Date(2026, 12, 2, 8, 13, 46, 5e8, plus1), true},
		{`{"ts":"2026-12-02T07:13:46.590Z"}`, time.Date(2026, 12, 2, 7, 13, 46, 590e6, time.UTC), true},
		{`{"ts":"2026-12-02T08:13:46.590+0100"}`, time.Date(2026, 12, 2, 8, 13, 46, 590e6, plus1), true},
		{`{"ts":"2026-12-02T07:13:46.590\u005a"}`, time.Date(2026, 12, 2, 7, 13, 46, 590e6, time.UTC), true},
		{`{"ts":"2026-12-02 07:13:46Z"}`, time.Time{}, false},
		{`{"ts":"2026/12/02"}`, time.Time{}, false},
		{`{"ts":""}`, time.Time{}, false},
		{`{"ts":true}`, time.Time{}, false},
		{`{"ts":null}`, time.Time{}, false},
		{`{"ts":[1764660826]}`, time.Time{}, false},
		{`{"time":1764660826}`, time.Unix(1764660826, 0).UTC(), true},
		{`{"message":"x","datetime":"2026-12-02T07:13:46.590123+00:00"}`, time.Date(2026, 12, 2, 7, 13, 46, 590123000, time.UTC), true},
		{`{"@timestamp":"2026-12-02T07:13:46Z","ts":"bad"}`, time.Time{}, false},
		{`{"level":"info","msg":"no time"}`, time.Time{}, false},
		{`{"request":{"ts":1764660826}}`, time.Time{}, false},
		{`{"ts":1764660826.}`, time.Time{}, false},
		{`not json`, time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := Timestamp([]byte(tt.line))
		if ok != tt.wantOK || !got.Equal(tt.want) {
			t.Errorf("Timestamp(%s) = %v, %v; want %v, %v", tt.line, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestTimestampKeepsMicroseconds(t *testing.T) {
	got, _ := Timestamp([]byte(`{"ts":1764660826.590123}`))
	if us := got.UnixMicro(); us != 1764660826590123 || got.Nanosecond() != 590123000 {
		t.Errorf("Timestamp(1764660826.590123) = %d µs (%d ns into the second), want 1764660826590123 µs exactly",
			us, got.Nanosecond())
	}
}

func FuzzTimestamp(f *testing.F) {
	for _, line := range []string{accessLogLine, `{"ts":-0.000001}`, `{"ts":1.5E+3}`, `{"ts":"2026-12-02T07:13:46.590Z"}`,
		`{"ts":"2026-12-02T08:13:46+0100"}`, `{"ts":99999999999999999999}`} {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, ok := Timestamp(line)
		v, _ := Lookup(line, []string{"ts"})
		f, isNumber := v.Float()
		if !ok || !isNumber {
			return
		}
		// Within the rounding of f itself, plus a nanosecond for the
		// digits Timestamp cuts.
		seconds := float64(got.Unix()) + float64(got.Nanosecond())/1e9
		if diff := math.Abs(seconds - f); diff > 1e-9+math.Abs(f)*1e-15 {
			t.Errorf("Timestamp(%s) = %s (%s s), %v s from the number", line, got,
				strconv.FormatFloat(seconds, 'f', -1, 64), diff)
		}
	})
}
