package sessionstore

import (
	"strconv"

	"github.com/caddylb/caddylb/internal/quantity"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The network backends' UnmarshalCaddyfile share these readers of a
// subdirective's arguments. Each expects the dispenser on the subdirective
// name and consumes the rest of its line.

// oneArg reads the single argument of the current subdirective.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	var v string
	if !d.AllArgs(&v) {
		return "", d.ArgErr()
	}
	return v, nil
}

// durationArg reads the single duration argument of the current
// subdirective ("250ms", "1m", "1d").
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := quantity.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s: %v", name, err)
	}
	return caddy.Duration(dur), nil
}

// intArg reads the single non-negative integer argument of the current
// subdirective.
func intArg(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, d.Errf("%s: want a non-negative integer, got %q", name, v)
	}
	return n, nil
}

// noArgs checks that the current subdirective has no arguments (a bare flag).
func noArgs(d *caddyfile.Dispenser) error {
	name := d.Val()
	if d.NextArg() {
		return d.Errf("%s takes no arguments, got %q", name, d.Val())
	}
	return nil
}
