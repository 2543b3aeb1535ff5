package logship

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// Caddy v2.11.9 keeps every log writer it opens in a process-wide pool
// and never closes them, on reload or shutdown. So the writer's life is
// kept here instead, driven by the module's Provision and Cleanup: one
// slot per spool directory for the life of the process. Its shipper
// starts with the first config that uses it and keeps going after the
// last one is gone, until the process exits: the old config's loggers
// may still write to it (requests in flight during a reload), and what
// they write is shipped like the rest. Only at process exit does the last
// config out flush for up to flush_timeout and stop.
var registry = struct {
	mu    sync.Mutex
	slots map[string]*slot
}{slots: make(map[string]*slot)}

// settings are what a provisioned Writer asks of its spool directory.
type settings struct {
	store, prefix, key, host, name         string
	rollSize, spoolMax                     int64
	rollInterval, flushTimeout, maxBackoff time.Duration
	onFull                                 string
	// kind is "log" for an `output s3` log writer, "files" for a
	// `ship_logs` file shipper: never both on one spool (the shipper
	// truncates what it wrote past its checkpoint).
	kind string
}

// source names the writer in metrics: "<kind>:<name>".
func (st settings) source() string { return st.kind + ":" + st.name }

// registration is one provisioned Writer using a slot.
type registration struct {
	cfg      context.Context // its config's context
	settings settings
	tmpl     keyTemplate
	store    objectstore.Store // set when the config starts (see started)
}

// slot is one spool directory.
type slot struct {
	dir   string
	spool *spool

	mu      sync.Mutex
	regs    []registration // configs using the slot, oldest first
	last    registration   // the settings in force: the newest registration
	shipper *shipper       // nil while no config uses the slot
	// The store of the newest config that started, for the uploads
	// made once no config uses the slot.
	lastStore objectstore.Store
}

// acquire registers a provisioned Writer with the slot of dir, opening
// the spool and starting its shipper if needed. A changed setting rolls
// the current file, so that entries written before and after the change
// are in different files. Object keys are made at upload time, with the
// settings in force then.
func acquire(dir string, reg registration) (*slot, error) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	alt := fmt.Sprintf("%s.pid%d", dir, os.Getpid())
	sl := registry.slots[dir]
	if sl == nil && reg.settings.kind != kindFiles {
		// An earlier config of ours already spools beside it. (A file
		// shipper tries its own directory again first: it may only
		// follow its files from there, see ShipLogs.Start.)
		sl = registry.slots[alt]
	}
	if sl == nil {
		sp, err := openSpool(dir, metricsFor(dir, reg.settings.source()))
		if errors.Is(err, errSpoolLocked) {
			// Another process (a `caddy validate` beside the running
			// node, a second Caddy on the same data directory) holds it.
			// Spool beside it; whoever finds that unused later ships it.
			logger().Warn("log spool directory in use by another process; spooling beside it",
				zap.String("spool_dir", dir), zap.String("instead", alt))
			dir = alt
			if sl = registry.slots[alt]; sl == nil {
				sp, err = openSpool(dir, metricsFor(dir, reg.settings.source()))
			}
		}
		if err != nil {
			return nil, err
		}
		if sl == nil {
			sl = &slot{dir: dir, spool: sp}
			registry.slots[dir] = sl
		}
	}
	if err := writeSpoolMeta(sl.dir, reg.settings); err != nil {
		return nil, err
	}
	sl.mu.Lock()
	for _, r := range sl.regs {
		if r.settings.kind != reg.settings.kind {
			sl.mu.Unlock()
			return nil, fmt.Errorf("spool directory %s is used by a `ship_logs` file shipper and an `output s3` log writer; give each its own spool_dir", dir)
		}
		if r.cfg == reg.cfg && r.settings != reg.settings {
			sl.mu.Unlock()
			return nil, fmt.Errorf("two s3 log writers of one config use spool directory %s with different settings; give each its own spool_dir", dir)
		}
	}
	changed := len(sl.regs) > 0 && sl.last.settings != reg.settings
	sl.regs = append(sl.regs, reg)
	sl.last = reg
	sl.mu.Unlock()

	st := reg.settings
	sl.spool.configure(st.rollSize, st.spoolMax, st.onFull)
	if sl.shipper == nil {
		sl.shipper = startShipper(sl)
	} else if changed {
		sl.spool.roll()
	}
	return sl, nil
}

// release unregisters the Writer of config cfg. At process exit the
// last one out rolls the current file and uploads what it can within
// flush_timeout; otherwise (a reload that dropped or moved the writer)
// the shipper goes on, starting with what was written so far.
func release(sl *slot, cfg context.Context) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	sl.mu.Lock()
	before := sl.last.settings
	for i, r := range sl.regs {
		if r.cfg == cfg {
			sl.regs = append(sl.regs[:i], sl.regs[i+1:]...)
			break
		}
	}
	remaining := len(sl.regs)
	if remaining > 0 {
		sl.last = sl.regs[remaining-1]
	}
	after, sh := sl.last.settings, sl.shipper
	exiting := remaining == 0 && processExiting()
	if exiting {
		sl.shipper = nil
	}
	sl.mu.Unlock()

	switch {
	case exiting:
		if sh != nil {
			sh.close(after.flushTimeout)
		}
	case remaining == 0:
		sl.spool.roll()
	case before != after: // a config that failed to load is undone
		sl.spool.configure(after.rollSize, after.spoolMax, after.onFull)
		sl.spool.roll()
	}
}

// processExiting tells a process exit from a reload; tests replace it.
var processExiting = caddy.Exiting

// current returns the settings in force.
func (sl *slot) current() registration {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.last
}

// errNotRunning: the newest config using the slot has not started, so
// its store is not known yet.
var errNotRunning = errors.New("waiting for the config to start")

// store returns the asset store to upload to and the settings in force:
// those of the newest config using the slot, once it started (during a
// reload, uploads wait for the new config rather than use a store about
// to be replaced), else those of the last config that did.
func (sl *slot) store() (objectstore.Store, registration, error) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	cur := sl.last
	switch {
	case len(sl.regs) > 0 && cur.store == nil:
		return nil, cur, errNotRunning
	case cur.store != nil:
		return cur.store, cur, nil
	case sl.lastStore != nil:
		return sl.lastStore, cur, nil
	}
	return nil, cur, errNotRunning
}

// waitingForStore reports whether a config uses the slot but the newest
// one has not handed over its store.
func (sl *slot) waitingForStore() bool {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return len(sl.regs) > 0 && sl.last.store == nil
}

// started records the store of config cfg when it starts. A log writer
// is provisioned while Caddy opens the logs, before the config's apps
// exist, so the store can only be had then (objectstore.WhenStarted).
func (sl *slot) started(cfg context.Context, store objectstore.Store) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	for i := range sl.regs {
		if sl.regs[i].cfg == cfg {
			sl.regs[i].store = store
		}
	}
	if sl.last.cfg == cfg {
		sl.last.store = store
	}
	sl.lastStore = store
}

// logger is Caddy's default logger at the time of the call. A log
// writer is provisioned while the logs themselves are being set up, when
// ctx.Logger() can hand out a logger whose cores do not exist yet. Tests
// replace it to read what is logged.
var logger = func() *zap.Logger {
	return caddy.Log().Named("logship")
}
