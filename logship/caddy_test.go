package logship

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/logging"

	// The handlers (asset_serve), for a config whose site provisions the
	// asset_store app before the log writer does.
	_ "github.com/caddylb/caddylb/assetcdn"
	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// caddyConfig is a config whose default log goes to an s3 writer that
// ships to a file asset store in root.
func caddyConfig(t *testing.T, root, spoolDir string, rollSize int) []byte {
	t.Helper()
	cfg := map[string]any{
		"admin": map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{
			"encoder": map[string]any{"format": "json"},
			"writer": map[string]any{
				"output": "s3", "store": "logs", "prefix": "caddy", "host": "n1",
				"spool_dir": spoolDir, "roll_size": rollSize,
			},
		}}},
		"apps": map[string]any{"asset_store": map[string]any{"stores": map[string]any{
			"logs": map[string]any{"backend": "file", "root": root},
		}}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCaddyReloadAndStopShipEverything runs the writer in Caddy: the
// store is found once the config runs, a reload that changes a setting
// keeps the spool, and Stop (which never closes log writers in v2.11.9)
// flushes through the module's Cleanup.
func TestCaddyReloadAndStopShipEverything(t *testing.T) {
	processExiting = func() bool { return true } // Stop as at process exit
	defer func() { processExiting = caddy.Exiting }()
	root, spoolDir := t.TempDir(), filepath.Join(t.TempDir(), "spool")
	if err := caddy.Load(caddyConfig(t, root, spoolDir, 1<<20), true); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		caddy.Log().Named("test").Info(fmt.Sprintf("before reload %d", i))
	}
	if err := caddy.Load(caddyConfig(t, root, spoolDir, 1<<21), true); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		caddy.Log().Named("test").Info(fmt.Sprintf("after reload %d", i))
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	resetDefaultLogger(t)
	fs := &objectstore.FileStore{Root: root}
	if err := fs.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	store := &flakyStore{FileStore: fs}
	var msgs []string
	for _, l := range store.lines(t) {
		var entry struct{ Logger, Msg string }
		if err := json.Unmarshal([]byte(l), &entry); err != nil {
			t.Fatalf("shipped line %q is not JSON: %v", l, err)
		}
		if entry.Logger == "test" {
			msgs = append(msgs, entry.Msg)
		}
	}
	if len(msgs) != 100 || msgs[0] != "before reload 0" || msgs[99] != "after reload 49" {
		t.Fatalf("shipped %d test entries (%q ... ), want 100 in order", len(msgs), msgs)
	}
	var objects int
	_ = store.List(context.Background(), "caddy/n1/", func(objectstore.ObjectInfo) error { objects++; return nil })
	if objects < 2 {
		t.Fatalf("%d objects: the reload that changed roll_size should have rolled a file", objects)
	}
}

// shippedTestMessages returns a function that reads the messages of
// the "test" logger shipped so far to the file store in root.
func shippedTestMessages(t *testing.T, root string) func() map[string]bool {
	t.Helper()
	fs := &objectstore.FileStore{Root: root}
	if err := fs.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return func() map[string]bool {
		msgs := map[string]bool{}
		for _, l := range (&flakyStore{FileStore: fs}).lines(t) {
			var entry struct{ Logger, Msg string }
			if json.Unmarshal([]byte(l), &entry) == nil && entry.Logger == "test" {
				msgs[entry.Msg] = true
			}
		}
		return msgs
	}
}

// forgetSpools makes the spools no config uses forget the store of their
// last config, as a new process starts without one. (The spools stay:
// Caddy keeps the writers it opened for the life of the process.)
func forgetSpools() {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	for _, sl := range registry.slots {
		sl.mu.Lock()
		if len(sl.regs) == 0 {
			sl.lastStore, sl.last.store = nil, nil
		}
		sl.mu.Unlock()
	}
}

// resetDefaultLogger loads and stops a config without logs, so Caddy's
// default logger no longer writes to a test's spool.
func resetDefaultLogger(t *testing.T) {
	t.Helper()
	if err := caddy.Load([]byte(`{"admin": {"disabled": true, "config": {"persist": false}}}`), true); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestReloadToAnotherSpoolShipsLateEntries: a reload that moves the
// writer to another spool directory leaves the old one shipping, so an
// entry the old config's loggers write after the reload (a request that
// was in flight) still reaches the store.
func TestReloadToAnotherSpoolShipsLateEntries(t *testing.T) {
	root := t.TempDir()
	first, second := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if err := caddy.Load(caddyConfig(t, root, first, 1<<20), true); err != nil {
		t.Fatal(err)
	}
	old := caddy.Log().Named("test")
	old.Info("before reload")
	if err := caddy.Load(caddyConfig(t, root, second, 1<<20), true); err != nil {
		t.Fatal(err)
	}
	old.Info("late entry of the old config")
	caddy.Log().Named("test").Info("after reload")

	shipped := shippedTestMessages(t, root)
	// The old spool rolls by time (roll_interval 5m by default) or at
	// exit; stop as at exit to flush both.
	processExiting = func() bool { return true }
	defer func() { processExiting = caddy.Exiting }()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	resetDefaultLogger(t)
	// The old directory's shipper is not tied to any config any more; it
	// flushes when the process exits. Here: close it as exit would.
	registry.mu.Lock()
	sl := registry.slots[first]
	registry.mu.Unlock()
	waitFor(t, "the late entry in the store", func() bool {
		sl.spool.roll()
		return shipped()["late entry of the old config"]
	})
	if got := shipped(); !got["before reload"] || !got["after reload"] {
		t.Fatalf("shipped %v", got)
	}
}

// TestSpoolInUseAndOrphansAreShipped: a spool directory held by another
// process makes the writer spool beside it instead of failing the config,
// and a spool left beside it by an earlier process is adopted and shipped
// with the settings it was written with.
func TestSpoolInUseAndOrphansAreShipped(t *testing.T) {
	processExiting = func() bool { return true }
	defer func() { processExiting = caddy.Exiting }()
	root, dir := t.TempDir(), filepath.Join(t.TempDir(), "spool")

	// "Another process" holds dir.
	held, err := openSpool(dir, metricsFor(dir, "log:test"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.lock.Close()

	// An earlier process left dir.pid999 with an unshipped entry.
	orphanDir := dir + ".pid999"
	orphan, err := openSpool(orphanDir, metricsFor(orphanDir, "log:test"))
	if err != nil {
		t.Fatal(err)
	}
	st := testSettings()
	st.store, st.prefix, st.host = "logs", "caddy", "old-node"
	orphan.configure(st.rollSize, st.spoolMax, st.onFull)
	if err := writeSpoolMeta(orphanDir, st); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(orphan, `{"logger":"test","msg":"left by an earlier process"}`)
	orphan.roll()
	orphan.lock.Close()

	if err := caddy.Load(caddyConfig(t, root, dir, 1<<20), true); err != nil {
		t.Fatalf("a spool directory in use failed the config: %v", err)
	}
	caddy.Log().Named("test").Info("spooled beside the busy directory")
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	resetDefaultLogger(t)

	fs := &objectstore.FileStore{Root: root}
	if err := fs.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both entries in the store", func() bool {
		msgs := map[string]bool{}
		for _, l := range (&flakyStore{FileStore: fs}).lines(t) {
			var entry struct{ Logger, Msg string }
			if json.Unmarshal([]byte(l), &entry) == nil {
				msgs[entry.Msg] = true
			}
		}
		return msgs["left by an earlier process"] && msgs["spooled beside the busy directory"]
	})
	var oldNode int
	_ = fs.List(context.Background(), "caddy/old-node/", func(objectstore.ObjectInfo) error { oldNode++; return nil })
	if oldNode != 1 {
		t.Fatalf("%d objects under the earlier process's host; its own settings name the key", oldNode)
	}
}

// TestBadWriterSettingsFailTheConfig: settings that would fail every
// upload are refused when the config loads, with a message naming them,
// instead of blocking the spool at run time.
func TestBadWriterSettingsFailTheConfig(t *testing.T) {
	processExiting = func() bool { return true }
	defer func() { processExiting = caddy.Exiting }()
	for _, tc := range []struct {
		change func(writer map[string]any)
		want   string
	}{
		{func(w map[string]any) { w["prefix"] = "x/../y" }, "invalid object keys"},
		{func(w map[string]any) { w["store"] = "nope" }, `asset store "nope" is not declared`},
	} {
		var cfg map[string]any
		_ = json.Unmarshal(caddyConfig(t, t.TempDir(), filepath.Join(t.TempDir(), "spool"), 1<<20), &cfg)
		tc.change(cfg["logging"].(map[string]any)["logs"].(map[string]any)["default"].(map[string]any)["writer"].(map[string]any))
		raw, _ := json.Marshal(cfg)
		err := caddy.Load(raw, true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("load: %v; want an error containing %q", err, tc.want)
		}
		_ = caddy.Stop()
	}
	resetDefaultLogger(t)
}

// TestStoreHandedOverWhicheverAppProvisionsFirst starts a config whose
// http app has asset handlers again and again. Caddy provisions apps in
// map order, so in some starts a handler provisions the asset_store app
// (with the context of its server) before the app's own turn: the writer
// must get its store in every start, and ship.
func TestStoreHandedOverWhicheverAppProvisionsFirst(t *testing.T) {
	processExiting = func() bool { return true }
	defer func() { processExiting = caddy.Exiting }()
	root, spoolDir := t.TempDir(), filepath.Join(t.TempDir(), "spool")
	var cfg map[string]any
	_ = json.Unmarshal(caddyConfig(t, root, spoolDir, 1<<20), &cfg)
	cfg["apps"].(map[string]any)["http"] = map[string]any{"servers": map[string]any{"srv0": map[string]any{
		"listen":          []string{"127.0.0.1:0"},
		"automatic_https": map[string]any{"disable": true},
		"routes": []any{
			map[string]any{"handle": []any{map[string]any{"handler": "asset_serve", "store": "logs"}}},
		},
	}}}
	raw, _ := json.Marshal(cfg)
	shipped := shippedTestMessages(t, root)
	const starts = 40
	var missing []int
	for i := range starts {
		if err := caddy.Load(raw, true); err != nil {
			t.Fatal(err)
		}
		msg := fmt.Sprintf("start %d", i)
		caddy.Log().Named("test").Info(msg)
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
		// Stop flushes: the entry is in the store now, not at some
		// later start that happens to get its store.
		if !shipped()[msg] {
			missing = append(missing, i)
		}
		forgetSpools() // the next start is a new process
	}
	resetDefaultLogger(t)
	if len(missing) > 0 {
		t.Fatalf("the entries of starts %v were not shipped at their stop (%d of %d)", missing, len(missing), starts)
	}
}
