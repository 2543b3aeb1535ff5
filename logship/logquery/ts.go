package logquery

import (
	"bytes"
	"math"
	"strconv"
	"time"
)

// timeFields are the members Timestamp looks for, in order: zap's (and
// so Caddy's) "ts", then the names other JSON loggers give the time
// (Monolog/Laravel "datetime", Logstash "@timestamp", and the common
// "time" and "timestamp").
var timeFields = [][]string{{"ts"}, {"time"}, {"timestamp"}, {"@timestamp"}, {"datetime"}}

// timeLayouts are the text forms of "ts" that Timestamp reads: RFC 3339,
// with or without fractional seconds, and zap's ISO8601 encoder's form,
// whose offset has no colon (2026-12-02T07:13:46.590+0100). A fraction
// is optional in both when parsing.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700"}

// Timestamp returns the time of line's "ts" member, or of the first of
// "time", "timestamp", "@timestamp" and "datetime" it has when it has
// no "ts". A number is Unix seconds with an optional fraction, zap's and
// so Caddy's default (1764660826.590123), and is returned in UTC; a
// string is RFC 3339 or zap's ISO8601 form. It reports false if none is
// there or readable.
func Timestamp(line []byte) (time.Time, bool) {
	for _, path := range timeFields {
		v, ok := Lookup(line, path)
		switch {
		case !ok:
			continue
		case v.Kind() == Number:
			return unixSeconds(v.Raw())
		case v.Kind() == String:
			return parseTimeText(v.String())
		}
		return time.Time{}, false
	}
	return time.Time{}, false
}

// unixSeconds converts a JSON number of Unix seconds to a time. It reads
// the integer and fraction digits apart, to the nanosecond, because a
// float64 holds only about 16 significant digits: 1764660826.590123 as
// a float64 is 1764660826.5901229381561279296875.
func unixSeconds(raw []byte) (time.Time, bool) {
	if bytes.ContainsAny(raw, "eE") {
		return unixSecondsFloat(raw)
	}
	neg := raw[0] == '-'
	if neg {
		raw = raw[1:]
	}
	whole, frac, _ := bytes.Cut(raw, []byte("."))
	if len(whole) > 18 { // would overflow int64
		return time.Time{}, false
	}
	sec := int64(0)
	for _, c := range whole {
		sec = sec*10 + int64(c-'0')
	}
	nsec := int64(0)
	for i := range 9 {
		nsec *= 10
		if i < len(frac) {
			nsec += int64(frac[i] - '0')
		}
	}
	if neg {
		sec, nsec = -sec, -nsec
	}
	return time.Unix(sec, nsec).UTC(), true
}

// unixSecondsFloat converts a number with an exponent, which zap never
// writes, by way of float64.
func unixSecondsFloat(raw []byte) (time.Time, bool) {
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.Abs(f) >= 1e18 {
		return time.Time{}, false
	}
	sec := math.Floor(f)
	nsec := math.Round((f - sec) * 1e9)
	return time.Unix(int64(sec), int64(nsec)).UTC(), true
}

// parseTimeText parses a "ts" string in any of timeLayouts.
func parseTimeText(s string) (time.Time, bool) {
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
