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
				if dur, err = quantity.ParseDurationOrDefault(v); err != nil {
					err = d.Errf("%v", err)
				}
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

// maxOffloadSize bounds the sizes of the upload handlers' options, which
// are summed (max_size times max_files, say) and must not overflow.
const maxOffloadSize = 1 << 50

// parseSize reads a size like 10MiB, 1GB or 512KB.
func parseSize(d *caddyfile.Dispenser, opt string, args []string) (int64, error) {
	v, err := single(d, opt, args)
	if err != nil {
		return 0, err
	}
	n, err := quantity.ParseSize(v)
	if err != nil {
		return 0, d.Errf("%v", err)
	}
	if n > maxOffloadSize {
		return 0, d.Errf("%q is too large: at most 1PiB", v)
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

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	asset_presign [<matcher>] {
//		store <name>
//		max_size <size>
//		allow_types <mime pattern>...
//		key <template>
//		expiry <duration>
//		authorize <url>
//		authorize_timeout <duration>
//		sign_secret <current> [<previous>...]
//	}
func (p *Presign) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("asset_presign takes no arguments besides a matcher, got %q", d.Val())
	}
	for d.NextBlock(0) {
		opt := d.Val()
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.Errf("asset_presign %s needs a value", opt)
		}
		var err error
		switch opt {
		case "store":
			p.Store, err = single(d, opt, args)
		case "max_size":
			p.MaxSize, err = parseSize(d, opt, args)
		case "allow_types":
			p.AllowTypes = append(p.AllowTypes, args...)
		case "key":
			p.Key, err = single(d, opt, args)
		case "expiry":
			p.Expiry, err = parseDuration(d, opt, args)
		case "authorize":
			p.Authorize, err = single(d, opt, args)
		case "authorize_timeout":
			p.AuthorizeTimeout, err = parseDuration(d, opt, args)
		case "sign_secret":
			p.SignSecret = append(p.SignSecret, args...)
		default:
			return d.Errf("asset_presign: unknown option %q", opt)
		}
		if err != nil {
			return d.Errf("asset_presign %s: %v", opt, err)
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the functions from the tokens of the
// templates directive's extensions block:
//
//	templates {
//		extensions {
//			assets [<store name>] {
//				prefix <key prefix>
//				manifest <path under prefix>
//				fallback local
//				local_url <base url>
//				refresh <duration>
//			}
//		}
//	}
//
// The asset_urls directive takes the same arguments and block.
func (a *AssetFunctions) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // extension or directive name
	what := "templates assets"
	if d.Val() != "assets" {
		what = d.Val()
	}
	if d.NextArg() {
		a.Store = d.Val()
	}
	if d.NextArg() {
		return d.Errf("%s: unexpected argument %q after the store name", what, d.Val())
	}
	for d.NextBlock(0) {
		opt := d.Val()
		args := d.RemainingArgs()
		var err error
		switch opt {
		case "prefix":
			a.Prefix, err = single(d, opt, args)
		case "manifest":
			a.Manifest, err = single(d, opt, args)
		case "fallback":
			a.Fallback, err = single(d, opt, args)
		case "local_url":
			a.LocalURL, err = single(d, opt, args)
		case "refresh":
			a.Refresh, err = parseDuration(d, opt, args)
		default:
			return d.Errf("%s: unknown option %q", what, opt)
		}
		if err != nil {
			return d.Errf("%s %s: %v", what, opt, err)
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	asset_serve [<matcher>] {
//		store <name>
//		mode redirect|proxy
//		strip_prefix <path prefix>
//		cache_control <header value>
//		private
//		presign_expiry <duration>
//		max_ranges <n>
//	}
func (s *Serve) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("asset_serve takes no arguments besides a matcher, got %q", d.Val())
	}
	for d.NextBlock(0) {
		opt := d.Val()
		args := d.RemainingArgs()
		var err error
		switch opt {
		case "private":
			if len(args) != 0 {
				return d.Errf("asset_serve private takes no value")
			}
			s.Private = true
			continue
		case "store":
			s.Store, err = single(d, opt, args)
		case "mode":
			s.Mode, err = single(d, opt, args)
		case "strip_prefix":
			var v string
			if v, err = single(d, opt, args); err == nil {
				s.StripPrefix = &v
			}
		case "cache_control":
			s.CacheControl = strings.Join(args, " ")
			if s.CacheControl == "" {
				err = d.Errf("cache_control needs a value")
			}
		case "presign_expiry":
			s.PresignExpiry, err = parseDuration(d, opt, args)
		case "max_ranges":
			s.MaxRanges, err = parsePositiveInt(d, opt, args)
		default:
			return d.Errf("asset_serve: unknown option %q", opt)
		}
		if err != nil {
			return d.Errf("asset_serve %s: %v", opt, err)
		}
	}
	return nil
}

// parseDuration reads a duration like 15m or 1h.
func parseDuration(d *caddyfile.Dispenser, opt string, args []string) (caddy.Duration, error) {
	v, err := single(d, opt, args)
	if err != nil {
		return 0, err
	}
	dur, err := quantity.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%v", err)
	}
	return caddy.Duration(dur), nil
}
