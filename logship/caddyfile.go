package logship

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// UnmarshalCaddyfile sets up the writer from the `output s3` tokens of a
// `log` directive:
//
//	output s3 [<store>] {
//		store         <asset_store name>
//		prefix        <key prefix>
//		key           <key template>
//		host          <node name>
//		name          <log name>
//		roll_size     <size>
//		roll_interval <duration>
//		spool_dir     <directory>
//		spool_max     <size>
//		on_full       drop_oldest|refuse_new
//		flush_timeout <duration>
//		max_backoff   <duration>
//	}
func (w *Writer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the writer's name, "s3"
	if d.NextArg() {
		w.Store = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if !d.NextArg() {
			return d.ArgErr()
		}
		val := d.Val()
		if d.NextArg() {
			return d.Errf("%s: one value expected, got another: %q", opt, d.Val())
		}
		if err := w.setOption(d, opt, val); err != nil {
			return err
		}
	}
	return nil
}

func (w *Writer) setOption(d *caddyfile.Dispenser, opt, val string) error {
	var err error
	switch opt {
	case "store":
		w.Store = val
	case "prefix":
		w.Prefix = val
	case "key":
		w.Key = undoShorthands.Replace(val)
	case "host":
		w.Host = val
	case "name":
		w.Name = val
	case "spool_dir":
		w.SpoolDir = val
	case "on_full":
		if val != onFullDropOldest && val != onFullRefuseNew {
			return d.Errf("on_full %q: want drop_oldest or refuse_new", val)
		}
		w.OnFull = val
	case "roll_size":
		w.RollSize, err = parseSize(val)
	case "spool_max":
		w.SpoolMax, err = parseSize(val)
	case "roll_interval":
		w.RollInterval, err = parseDuration(val)
	case "flush_timeout":
		w.FlushTimeout, err = parseDuration(val)
	case "max_backoff":
		w.MaxBackoff, err = parseDuration(val)
	default:
		return d.Errf("unknown s3 log writer option %q", opt)
	}
	if err != nil {
		return d.Errf("%s %q: %v", opt, val, err)
	}
	return nil
}

// undoShorthands gives back the key placeholders {host} and {uuid}: in
// a site block the Caddyfile adapter rewrites them as request
// placeholders before the writer sees its tokens, and a log writer has
// no request.
var undoShorthands = strings.NewReplacer("{http.request.host}", "{host}", "{http.request.uuid}", "{uuid}")

// parseSize reads "16MiB", "500KB" or a number of bytes.
func parseSize(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, err
	}
	if n == 0 || n > 1<<62 {
		return 0, strconv.ErrRange
	}
	return int64(n), nil
}

func parseDuration(s string) (caddy.Duration, error) {
	d, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, strconv.ErrRange
	}
	return caddy.Duration(d), nil
}
