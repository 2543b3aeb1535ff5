// Package quantity parses the sizes and durations of caddy-lb's
// Caddyfile options, one way for every module: a size is bytes with an
// optional unit (10MiB, 1GB, 512KB, 5242880), a duration is Caddy's
// (250ms, 1m, 1d). Both must be positive; sizes stop at MaxSize.
package quantity

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/dustin/go-humanize"
)

// MaxSize is the largest size accepted, 4 EiB: past any real part, file
// or upload, short of overflowing an int64. Options whose sizes are
// summed (asset_offload's) set a lower bound of their own.
const MaxSize = 1 << 62

// ParseSize reads a positive size such as "10MiB", "16MB" or "5242880".
func ParseSize(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 || n > MaxSize {
		return 0, fmt.Errorf("%q is not a size like 10MiB (a positive number of bytes)", s)
	}
	return int64(n), nil
}

// ParseDuration reads a positive duration such as "250ms", "15m" or "1d".
func ParseDuration(s string) (time.Duration, error) {
	d, err := caddy.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration like 15m", s)
	}
	return d, nil
}

// ParseSizeOrDefault is ParseSize that also takes 0, for options whose
// zero means "the default".
func ParseSizeOrDefault(s string) (int64, error) {
	if n, err := humanize.ParseBytes(s); err == nil && n == 0 {
		return 0, nil
	}
	return ParseSize(s)
}

// ParseDurationOrDefault is ParseDuration that also takes 0, for options
// whose zero means "the default".
func ParseDurationOrDefault(s string) (time.Duration, error) {
	if d, err := caddy.ParseDuration(s); err == nil && d == 0 {
		return 0, nil
	}
	return ParseDuration(s)
}
