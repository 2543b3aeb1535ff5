package objectstore

import (
	"github.com/caddylb/caddylb/internal/quantity"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	asset_store <name> s3 {
//		bucket <bucket>
//		endpoint <url>
//		region <region>
//		access_key <id>
//		secret_key <secret>
//		path_style
//		prefix <key prefix>
//		public_url <base url>
//		part_size <size>
//		upload_memory <size>
//		part_hold_time <duration>
//		ca_file <pem file>
//	}
//
// The dispenser's next token must be `s3` (caddyfile.UnmarshalModule
// arranges that); a dispenser already on the `s3` token works too.
func (s *S3Store) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.Val() != "s3" {
		d.Next() // backend name
	}
	if d.NextArg() {
		return d.Errf("s3 asset store: unexpected argument %q; settings go in a block", d.Val())
	}
	for d.NextBlock(0) {
		if err := s.unmarshalOption(d); err != nil {
			return err
		}
	}
	return nil
}

// unmarshalOption parses one subdirective of the s3 block.
func (s *S3Store) unmarshalOption(d *caddyfile.Dispenser) error {
	name := d.Val()
	if name == "path_style" {
		if d.NextArg() {
			return d.Errf("path_style takes no arguments, got %q", d.Val())
		}
		s.PathStyle = true
		return nil
	}
	var v string
	if !d.AllArgs(&v) {
		return d.ArgErr()
	}
	switch name {
	case "bucket":
		s.Bucket = v
	case "endpoint":
		s.Endpoint = v
	case "region":
		s.Region = v
	case "access_key":
		s.AccessKey = v
	case "secret_key":
		s.SecretKey = v
	case "prefix":
		s.Prefix = v
	case "public_url":
		s.PublicBaseURL = v
	case "ca_file":
		s.CAFile = v
	case "part_hold_time":
		d2, err := quantity.ParseDuration(v)
		if err != nil {
			return d.Errf("part_hold_time: %v", err)
		}
		s.PartHoldTime = caddy.Duration(d2)
	case "part_size", "upload_memory":
		n, err := quantity.ParseSizeOrDefault(v)
		if err != nil {
			return d.Errf("%s: %v", name, err)
		}
		if name == "part_size" {
			s.PartSize = n
		} else {
			s.UploadMemory = n
		}
	default:
		return d.Errf("s3 asset store: unknown option %q", name)
	}
	return nil
}

// UnmarshalCaddyfile sets up the store from the tokens after the
// `file` backend name:
//
//	asset_store <name> file <dir> {
//		public_url <base url>
//	}
//
// The dispenser's first token is the `file` backend name.
func (f *FileStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // backend name
	if !d.NextArg() {
		return d.ArgErr()
	}
	f.Root = d.Val()
	if d.NextArg() {
		return d.Errf("file asset store: unexpected argument %q after the directory", d.Val())
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "public_url":
			if !d.NextArg() {
				return d.ArgErr()
			}
			f.PublicBaseURL = d.Val()
		default:
			return d.Errf("file asset store: unknown option %q", d.Val())
		}
	}
	return nil
}
