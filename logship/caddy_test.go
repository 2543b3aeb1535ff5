package logship

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/logging"

	"github.com/caddylb/caddylb/assetcdn"
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
	fs := &assetcdn.FileStore{Root: root}
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
	_ = store.List(context.Background(), "caddy/n1/", func(assetcdn.ObjectInfo) error { objects++; return nil })
	if objects < 2 {
		t.Fatalf("%d objects: the reload that changed roll_size should have rolled a file", objects)
	}
}
