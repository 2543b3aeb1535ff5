package logship

import (
	"strings"

	"github.com/caddylb/caddylb/internal/quantity"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
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
		w.RollSize, err = quantity.ParseSize(val)
	case "spool_max":
		w.SpoolMax, err = quantity.ParseSize(val)
	case "roll_interval":
		w.RollInterval, err = caddyDuration(val)
	case "flush_timeout":
		w.FlushTimeout, err = caddyDuration(val)
	case "max_backoff":
		w.MaxBackoff, err = caddyDuration(val)
	default:
		return d.Errf("unknown s3 log writer option %q", opt)
	}
	if err != nil {
		return d.Errf("%s: %v", opt, err)
	}
	return nil
}

// undoShorthands gives back the key placeholders {host} and {uuid}: in
// a site block the Caddyfile adapter rewrites them as request
// placeholders before the writer sees its tokens, and a log writer has
// no request.
var undoShorthands = strings.NewReplacer("{http.request.host}", "{host}", "{http.request.uuid}", "{uuid}")

// caddyDuration is quantity.ParseDuration as a caddy.Duration.
func caddyDuration(s string) (caddy.Duration, error) {
	d, err := quantity.ParseDuration(s)
	return caddy.Duration(d), err
}
