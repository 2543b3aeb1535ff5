package logquery

import (
	"encoding/json"
	"testing"
)

// BenchmarkMatch measures conditions on a Caddy access log line, and
// the same test done by decoding the line with encoding/json.
func BenchmarkMatch(b *testing.B) {
	line := []byte(accessLogLine)
	for _, expr := range []string{"status>=500", "request.host=shop.example.com", "request.headers.User-Agent.0~Firefox"} {
		c, err := ParseWhere(expr)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(expr, func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				c.Match(line)
			}
		})
	}
	b.Run("json.Unmarshal/status>=500", func(b *testing.B) {
		b.SetBytes(int64(len(line)))
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				b.Fatal(err)
			}
			if status, _ := m["status"].(float64); status >= 500 {
				b.Fatal("status >= 500")
			}
		}
	})
}

func BenchmarkTimestamp(b *testing.B) {
	line := []byte(accessLogLine)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		Timestamp(line)
	}
}
