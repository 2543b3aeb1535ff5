package assetcdn

import (
	"strconv"
	"strings"
	"time"

	"github.com/caddylb/caddylb/internal/quantity"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	asset_offload [<matcher>] {
//		store <name>
//		max_size <size>
//		max_files <n>
//		max_fields_size <size>
//		allow_types <mime pattern>...
//		key <template>
//		sign_secret <current> [<previous>...]
//		respond json
//		authorize <url>
//		authorize_timeout <duration>
//		cleanup_on <status|class>...
//		raw_field <name>
//		min_rate <size>|off
//		min_rate_grace <duration>
//	}
func (o *Offload) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("asset_offload takes no arguments besides a matcher, got %q", d.Val())
	}
	for d.NextBlock(0) {
		opt := d.Val()
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.Errf("asset_offload %s needs a value", opt)
		}
		var err error
		switch opt {
		case "store":
			o.Store, err = single(d, opt, args)
		case "max_size":
			o.MaxSize, err = parseSize(d, opt, args)
		case "max_fields_size":
			o.MaxFieldsSize, err = parseSize(d, opt, args)
		case "max_files":
			o.MaxFiles, err = parsePositiveInt(d, opt, args)
		case "allow_types":
			o.AllowTypes = append(o.AllowTypes, args...)
		case "key":
			o.Key, err = single(d, opt, args)
		case "sign_secret":
			o.SignSecret = append(o.SignSecret, args...)
		case "respond":
			o.Respond, err = single(d, opt, args)
		case "authorize":
			o.Authorize, err = single(d, opt, args)
		case "authorize_timeout":
			var v string
			if v, err = single(d, opt, args); err == nil {
				var dur time.Duration
				dur, err = caddy.ParseDuration(v)
				o.AuthorizeTimeout = caddy.Duration(dur)
			}
		case "cleanup_on":
			o.CleanupOn = append(o.CleanupOn, args...)
		case "raw_field":
			o.RawField, err = single(d, opt, args)
		case "min_rate":
			if len(args) == 1 && args[0] == "off" {
				o.MinRate = -1
			} else {
				args[0] = strings.TrimSuffix(args[0], "/s") // "1KiB/s" reads as it is meant
				o.MinRate, err = parseSize(d, opt, args)
			}
		case "min_rate_grace":
			o.MinRateGrace, err = parseDuration(d, opt, args)
		default:
			return d.Errf("asset_offload: unknown option %q", opt)
		}
		if err != nil {
			return d.Errf("asset_offload %s: %v", opt, err)
		}
	}
	return nil
}

// single returns the one argument of opt.
func single(d *caddyfile.Dispenser, opt string, args []string) (string, error) {
	if len(args) != 1 {
		return "", d.Errf("%s takes exactly one value, got %d", opt, len(args))
	}
	return args[0], nil
}

// parseSize reads a size like 10MiB, 1GB or 512KB.
func parseSize(d *caddyfile.Dispenser, opt string, args []string) (int64, error) {
	v, err := single(d, opt, args)
	if err != nil {
		return 0, err
	}
	n, err := quantity.ParseSize(v)
	if err != nil {
		return 0, d.Errf("%s: %v", opt, err)
	}
	return n, nil
}

func parsePositiveInt(d *caddyfile.Dispenser, opt string, args []string) (int, error) {
	v, err := single(d, opt, args)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, d.Errf("%q is not a positive whole number", v)
	}
	return n, nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Offload)(nil)
