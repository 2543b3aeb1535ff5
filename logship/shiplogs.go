package logship

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
	"github.com/caddylb/caddylb/internal/quantity"
)

func init() {
	caddy.RegisterModule(ShipLogs{})
}

// DefaultFilesName is the log name in the object keys of a file
// shipper that sets none.
const DefaultFilesName = "app"

// ShipLogs is the `ship_logs` app: file shippers, each following the
// log files its globs match (an application's own logs, a web server's
// access log) and shipping their lines to an asset store the way an
// `output s3` log writer ships Caddy's: spooled, gzipped, uploaded in
// order. Plain-text lines are wrapped as JSON objects; JSON lines are
// kept as they are. See docs/logs.md.
type ShipLogs struct {
	Shippers []*FileShipper `json:"shippers,omitempty"`

	running []*tailer
}

// FileShipper is one `ship_logs` block: the files, and the writer
// settings of the spool they are shipped through (those of `output s3`;
// the spool directory defaults to one per name).
type FileShipper struct {
	// The files to follow: absolute glob patterns (filepath.Match
	// syntax). New files that match are followed from their start;
	// names ending in .gz, .bz2, .xz, .zst, .zip or .lz4 (compressed
	// rotations) are skipped.
	Files []string `json:"files"`

	// The longest line shipped as one record, in bytes. A longer line is
	// shipped in pieces of at most this many bytes, each with "part"
	// (from 1) and all but the last with "more": true. Default: 64 KiB;
	// at most 16 MiB.
	MaxLine int `json:"max_line,omitempty"`

	Writer
}

// CaddyModule returns the Caddy module information.
func (ShipLogs) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "ship_logs",
		New: func() caddy.Module { return new(ShipLogs) },
	}
}

// Provision checks every shipper and opens its spool. The asset store
// must be declared: a missing one fails the config now, not at the
// first upload.
func (a *ShipLogs) Provision(ctx caddy.Context) error {
	appIface, err := ctx.App("asset_store")
	if err != nil {
		return fmt.Errorf("ship_logs: %v", err)
	}
	stores := appIface.(*objectstore.App)
	dirs, names := map[string]bool{}, map[string]bool{}
	for i, s := range a.Shippers {
		if err := s.provision(ctx, stores); err != nil {
			return fmt.Errorf("ship_logs %d (%s): %w", i+1, s.Name, err)
		}
		if dirs[s.SpoolDir] {
			return fmt.Errorf("ship_logs %d (%s): another ship_logs uses spool directory %s; give each its own name or spool_dir", i+1, s.Name, s.SpoolDir)
		}
		// The name is the log's in object keys and metrics: two shippers
		// of one name would be one stream to a search, in no order.
		if names[s.Name] {
			return fmt.Errorf("ship_logs %d: another ship_logs is named %q; give each its own name", i+1, s.Name)
		}
		dirs[s.SpoolDir], names[s.Name] = true, true
	}
	return nil
}

func (s *FileShipper) provision(ctx caddy.Context, stores *objectstore.App) error {
	if len(s.Files) == 0 {
		return errors.New("files: at least one glob is required")
	}
	repl := caddy.NewReplacer()
	for i, g := range s.Files {
		g = repl.ReplaceAll(g, "")
		if _, err := filepath.Match(g, ""); err != nil {
			return fmt.Errorf("files %q: %v", g, err)
		}
		abs, err := filepath.Abs(g)
		if err != nil {
			return fmt.Errorf("files %q: %v", g, err)
		}
		s.Files[i] = abs
	}
	if s.MaxLine == 0 {
		s.MaxLine = DefaultMaxLine
	}
	if s.MaxLine < 256 || s.MaxLine > MaxMaxLine {
		return fmt.Errorf("max_line %d: want 256 bytes to 16 MiB", s.MaxLine)
	}
	if s.Name == "" {
		s.Name = DefaultFilesName
	}
	// Room for a batch (1 MiB of lines, up to 4 MiB of records) or a piece of
	// a long line in the spool, or the shipper would wait forever.
	if least := int64(max(16<<20, 16*s.MaxLine)); s.SpoolMax != 0 && s.SpoolMax < least {
		return fmt.Errorf("spool_max %d: a file shipper needs at least %d bytes (16 MiB, and 16 times max_line)", s.SpoolMax, least)
	}
	s.kind = kindFiles
	if s.SpoolDir == "" {
		// By name only: a changed store, prefix or key must find the same
		// spool, and with it the checkpoint, or every file would be read
		// again from its start.
		name := repl.ReplaceAll(s.Name, "")
		sum := sha256.Sum256([]byte(kindFiles + "\x00" + name))
		s.SpoolDir = filepath.Join(caddy.AppDataDir(), "logship", "files-"+hex.EncodeToString(sum[:8]))
	}
	if _, err := stores.Store(repl.ReplaceAll(s.Store, "")); err != nil {
		return err
	}
	if err := s.Writer.Provision(ctx); err != nil {
		return err
	}
	// A glob that matches the spool's own files would ship them again,
	// and again (files in any spool are skipped as they are found, too).
	probe := filepath.Join(s.SpoolDir, "20260102T150405.000Z-00000000-0000-4000-8000-000000000000"+suffixRolled)
	for _, g := range s.Files {
		if ok, _ := filepath.Match(g, probe); ok {
			_ = s.Writer.Cleanup()
			return fmt.Errorf("files %q matches the files of the spool directory %s; set spool_dir outside the globs", g, s.SpoolDir)
		}
	}
	return nil
}

func (s *FileShipper) tailConfig() tailConfig {
	return tailConfig{dir: s.SpoolDir, globs: s.Files, host: s.Host, maxLine: s.MaxLine, source: s.settings().source()}
}

// Start follows the files; a follower of the previous config on the
// same spool hands over first.
func (a *ShipLogs) Start() error {
	for _, s := range a.Shippers {
		if s.slot.dir != s.SpoolDir {
			// Another process holds the spool (see acquire): it ships
			// these files already; a second follower would ship them
			// twice.
			a.Stop()
			return fmt.Errorf("ship_logs %s: spool directory %s is in use by another process, which ships these files; stop it first, or give this one its own spool_dir", s.Name, s.SpoolDir)
		}
		a.running = append(a.running, startTailer(s.tailConfig(), s.slot.spool))
	}
	return nil
}

// Stop stops following. Everything read is in the spool, which the
// writer's cleanup flushes at exit.
func (a *ShipLogs) Stop() error {
	for _, t := range a.running {
		stopTailer(t)
	}
	a.running = nil
	return nil
}

// Cleanup leaves the spools (the last config out flushes them).
func (a *ShipLogs) Cleanup() error {
	for _, s := range a.Shippers {
		_ = s.Writer.Cleanup()
	}
	return nil
}

// UnmarshalCaddyfile sets up one shipper from a `ship_logs` block:
//
//	ship_logs {
//		files     <glob>...
//		store     <asset_store name>
//		name      <log name>
//		host      <node name>
//		max_line  <size>
//		prefix|key|roll_size|roll_interval|spool_dir|spool_max|on_full|flush_timeout|max_backoff <value>
//	}
func (s *FileShipper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // ship_logs
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.Errf("%s: a value is required", opt)
		}
		switch opt {
		case "files":
			s.Files = append(s.Files, args...)
			continue
		case "max_line":
			if len(args) != 1 {
				return d.Errf("max_line: one value expected")
			}
			n, err := quantity.ParseSize(args[0])
			if err != nil {
				return d.Errf("max_line: %v", err)
			}
			s.MaxLine = int(n)
			continue
		}
		if len(args) != 1 {
			return d.Errf("%s: one value expected, got %d", opt, len(args))
		}
		if err := s.Writer.setOption(d, opt, args[0]); err != nil {
			return err
		}
	}
	if len(s.Files) == 0 {
		return d.Err("ship_logs: files is required: the globs of the log files to ship")
	}
	return nil
}

// Interface guards
var (
	_ caddy.App             = (*ShipLogs)(nil)
	_ caddy.Provisioner     = (*ShipLogs)(nil)
	_ caddy.CleanerUpper    = (*ShipLogs)(nil)
	_ caddyfile.Unmarshaler = (*FileShipper)(nil)
)
