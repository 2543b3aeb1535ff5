package logship

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

func init() {
	caddy.RegisterModule(Writer{})
}

// Defaults of the writer's settings.
const (
	DefaultPrefix       = "logs"
	DefaultName         = "caddy"
	DefaultRollSize     = 16 << 20 // 16 MiB
	DefaultRollInterval = 5 * time.Minute
	DefaultSpoolMax     = 1 << 30 // 1 GiB
	DefaultFlushTimeout = 10 * time.Second
	DefaultMaxBackoff   = time.Minute
)

// Kinds of writer (settings.kind).
const (
	kindLog   = "log"
	kindFiles = "files"
)

// Writer ships logs to an object store declared with the `asset_store`
// global option: entries are spooled to local disk, rolled by size and
// time, gzipped and uploaded, oldest first. See the package doc for the
// delivery rule.
type Writer struct {
	// The asset store to ship to, by the name it has in the `asset_store`
	// global option. Empty means the only declared store.
	Store string `json:"store,omitempty"`

	// The first part of every object key, e.g. "logs/prod". Default:
	// "logs".
	Prefix string `json:"prefix,omitempty"`

	// The object key of a shipped file. Placeholders: {prefix}, {host},
	// {name}, {yyyy} {mm} {dd} {HH} {MM} and {ts} (when the file was
	// started, UTC), {uuid} (the file's random id). {ts} and {uuid} are
	// required. Empty path segments are dropped. Default:
	// "{prefix}/{host}/{yyyy}/{mm}/{dd}/{HH}/{name}-{ts}-{uuid}.log.gz".
	Key string `json:"key,omitempty"`

	// The node's name in object keys. Default: the machine's host name.
	Host string `json:"host,omitempty"`

	// The log's name in object keys, e.g. "access". Default: "caddy".
	Name string `json:"name,omitempty"`

	// A spool file is rolled (and uploaded) once it holds this many
	// bytes, before compression. Default: 16 MiB.
	RollSize int64 `json:"roll_size,omitempty"`

	// A spool file is rolled once it is this old, so that logs arrive
	// within about this delay even when traffic is light. Default: 5m.
	RollInterval caddy.Duration `json:"roll_interval,omitempty"`

	// The local directory that holds entries until they are uploaded.
	// Only one process may use a directory; a second one (a `caddy
	// validate` on a running node, another Caddy on the same data
	// directory) spools to "<spool_dir>.pid<pid>" beside it instead, which
	// is shipped later by whichever process finds it unused. Default: a
	// directory per destination (store, prefix, key, name) under Caddy's
	// data directory, "logship/<hash>". Keep it on a local disk.
	SpoolDir string `json:"spool_dir,omitempty"`

	// The most bytes the spool may hold, the file being written
	// included. Must be at least twice roll_size. Default: 1 GiB.
	SpoolMax int64 `json:"spool_max,omitempty"`

	// What gives when the spool is full: "drop_oldest" deletes the
	// oldest files not yet uploaded, "refuse_new" drops new entries.
	// Either is counted in caddylb_logship_dropped_bytes_total and
	// logged. Default: drop_oldest.
	OnFull string `json:"on_full,omitempty"`

	// When the last config using this writer unloads (shutdown, or a
	// reload that removes or changes it), pending files are uploaded for
	// up to this long; the rest stays in the spool for the next start.
	// Default: 10s.
	FlushTimeout caddy.Duration `json:"flush_timeout,omitempty"`

	// The longest wait between two attempts to upload a file. Default:
	// 1m.
	MaxBackoff caddy.Duration `json:"max_backoff,omitempty"`

	kind          string // kindLog, or kindFiles for a ship_logs shipper
	tmpl          keyTemplate
	slot          *slot
	cfg           context.Context
	forgetOnStart func()
}

// CaddyModule returns the Caddy module information.
func (Writer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.writers.s3",
		New: func() caddy.Module { return new(Writer) },
	}
}

// Provision sets defaults, opens (or joins) the spool and starts its
// uploader. The store itself is looked up once the config runs.
func (w *Writer) Provision(ctx caddy.Context) error {
	if err := w.setDefaults(); err != nil {
		return err
	}
	if err := w.Validate(); err != nil {
		return err
	}
	tmpl, err := parseKeyTemplate(w.Key)
	if err != nil {
		return err
	}
	w.tmpl = tmpl
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering log shipping metrics: %v", err)
	}
	sl, err := acquire(w.SpoolDir, registration{cfg: ctx.Context, settings: w.settings(), tmpl: tmpl})
	if err != nil {
		return err
	}
	w.slot, w.cfg = sl, ctx.Context
	// The config's apps do not exist yet (logs are opened first): take
	// the store when the config starts, so that the shipper has it even
	// if the config is stopped before any upload was due.
	name := w.Store
	w.forgetOnStart = objectstore.WhenStarted(ctx.Context, func(app *objectstore.App) error {
		st, err := app.Store(name)
		if err != nil {
			return fmt.Errorf("s3 log writer: %v", err)
		}
		sl.started(ctx.Context, st)
		adoptOrphans(sl, app)
		return nil
	})
	return nil
}

// setDefaults fills in defaults and resolves {env.*} placeholders.
func (w *Writer) setDefaults() error {
	repl := caddy.NewReplacer()
	w.Store = repl.ReplaceAll(w.Store, "")
	w.Prefix = repl.ReplaceAll(w.Prefix, "")
	w.Host = repl.ReplaceAll(w.Host, "")
	w.Name = repl.ReplaceAll(w.Name, "")
	w.SpoolDir = repl.ReplaceAll(w.SpoolDir, "")
	if w.Prefix == "" {
		w.Prefix = DefaultPrefix
	}
	if w.Key == "" {
		w.Key = DefaultKey
	}
	if w.Host == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("s3 log writer: host name for object keys: %v; set `host`", err)
		}
		w.Host = host
	}
	if w.Name == "" {
		w.Name = DefaultName
	}
	if w.RollSize == 0 {
		w.RollSize = DefaultRollSize
	}
	if w.RollInterval == 0 {
		w.RollInterval = caddy.Duration(DefaultRollInterval)
	}
	if w.SpoolMax == 0 {
		w.SpoolMax = DefaultSpoolMax
	}
	if w.OnFull == "" {
		w.OnFull = onFullDropOldest
	}
	if w.FlushTimeout == 0 {
		w.FlushTimeout = caddy.Duration(DefaultFlushTimeout)
	}
	if w.MaxBackoff == 0 {
		w.MaxBackoff = caddy.Duration(DefaultMaxBackoff)
	}
	if w.SpoolDir == "" {
		// Not the host: a node whose name changes (a re-created container
		// on the same volume) must find what its predecessor left.
		sum := sha256.Sum256([]byte(w.Store + "\x00" + w.Prefix + "\x00" + w.Key + "\x00" + w.Name))
		w.SpoolDir = filepath.Join(caddy.AppDataDir(), "logship", hex.EncodeToString(sum[:8]))
	}
	abs, err := filepath.Abs(w.SpoolDir)
	if err != nil {
		return fmt.Errorf("s3 log writer: spool_dir %q: %v", w.SpoolDir, err)
	}
	w.SpoolDir = abs
	return nil
}

// Validate checks the settings.
func (w *Writer) Validate() error {
	switch {
	case w.OnFull != onFullDropOldest && w.OnFull != onFullRefuseNew:
		return fmt.Errorf("s3 log writer: on_full %q: want drop_oldest or refuse_new", w.OnFull)
	case w.RollSize < 0 || w.RollInterval < 0 || w.FlushTimeout < 0 || w.MaxBackoff < 0:
		return fmt.Errorf("s3 log writer: roll_size, roll_interval, flush_timeout and max_backoff must be positive")
	case w.SpoolMax < 2*w.RollSize:
		return fmt.Errorf("s3 log writer: spool_max (%d bytes) must be at least twice roll_size (%d bytes)", w.SpoolMax, w.RollSize)
	}
	tmpl, err := parseKeyTemplate(w.Key)
	if err != nil {
		return err
	}
	// A prefix, host or name that makes an invalid key ("x/../y") would
	// fail every upload and block the spool: refuse it now.
	if _, err := tmpl.render(keyValues{Prefix: w.Prefix, Host: w.Host, Name: w.Name, UUID: objectstore.NewUUID(), Time: time.Now()}); err != nil {
		return fmt.Errorf("s3 log writer: prefix %q, host %q and name %q make invalid object keys: %v", w.Prefix, w.Host, w.Name, err)
	}
	return nil
}

func (w *Writer) settings() settings {
	return settings{
		store: w.Store, prefix: w.Prefix, key: w.Key, host: w.Host, name: w.Name,
		rollSize: w.RollSize, spoolMax: w.SpoolMax, onFull: w.OnFull,
		rollInterval: time.Duration(w.RollInterval), flushTimeout: time.Duration(w.FlushTimeout),
		maxBackoff: time.Duration(w.MaxBackoff), kind: cmp.Or(w.kind, kindLog),
	}
}

// Cleanup leaves the spool; the last config out flushes it.
func (w *Writer) Cleanup() error {
	if w.forgetOnStart != nil {
		w.forgetOnStart()
		w.forgetOnStart = nil
	}
	if w.slot != nil {
		release(w.slot, w.cfg)
		w.slot = nil
	}
	return nil
}

// String describes the writer in Caddy's logs.
func (w *Writer) String() string {
	return fmt.Sprintf("s3 log writer to asset store %q (spool %s)", w.Store, w.SpoolDir)
}

// WriterKey names the writer in Caddy's writer pool: every setting, so
// a config that changes any of them gets a writer of its own.
func (w *Writer) WriterKey() string {
	return fmt.Sprintf("logship:%+v", w.settings()) + ":" + w.SpoolDir
}

// OpenWriter returns the spool of the writer's directory. Closing it
// does nothing: Caddy v2.11.9 never closes log writers, so the spool is
// flushed when the module is cleaned up instead.
func (w *Writer) OpenWriter() (io.WriteCloser, error) {
	if w.slot == nil {
		return nil, fmt.Errorf("s3 log writer: not provisioned")
	}
	return spoolWriter{w.slot.spool}, nil
}

// spoolWriter is what Caddy writes log entries to.
type spoolWriter struct{ *spool }

// Close does nothing; see OpenWriter.
func (spoolWriter) Close() error { return nil }

// Interface guards
var (
	_ caddy.Provisioner     = (*Writer)(nil)
	_ caddy.Validator       = (*Writer)(nil)
	_ caddy.CleanerUpper    = (*Writer)(nil)
	_ caddy.WriterOpener    = (*Writer)(nil)
	_ caddyfile.Unmarshaler = (*Writer)(nil)
)
