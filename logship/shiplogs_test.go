package logship

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// shipLogsConfig is a config with one file shipper of logs/*.log into
// a file store in root.
func shipLogsConfig(t *testing.T, root, logs, spoolDir string, extra map[string]any) []byte {
	t.Helper()
	shipper := map[string]any{
		"files": []string{filepath.Join(logs, "*.log")}, "store": "logs", "host": "web-1",
		"spool_dir": spoolDir, "roll_interval": int64(50 * time.Millisecond),
	}
	for k, v := range extra {
		shipper[k] = v
	}
	cfg := map[string]any{
		"admin": map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
		"apps": map[string]any{
			"asset_store": map[string]any{"stores": map[string]any{"logs": map[string]any{"backend": "file", "root": root}}},
			"ship_logs":   map[string]any{"shippers": []any{shipper}},
		},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestShipLogsAcrossReloads: a reload hands the files over from the old
// config's follower to the new one's (the new one starts after the old
// one stopped), so lines written before, during and after it are each
// shipped once, and a reload that changes the prefix keeps the spool
// and its checkpoint.
func TestShipLogsAcrossReloads(t *testing.T) {
	processExiting = func() bool { return true }
	defer func() { processExiting = caddy.Exiting }()
	root, logs, spoolDir := t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "spool")
	path := filepath.Join(logs, "app.log")
	if err := caddy.Load(shipLogsConfig(t, root, logs, spoolDir, nil), true); err != nil {
		t.Fatal(err)
	}
	n := 0
	write := func(k int) {
		var b strings.Builder
		for range k {
			n++
			fmt.Fprintf(&b, "line %d\n", n)
		}
		appendFile(t, path, b.String())
	}
	write(100)
	time.Sleep(300 * time.Millisecond)
	for i := range 3 {
		write(50)
		extra := map[string]any{"prefix": fmt.Sprintf("p%d", i)}
		if err := caddy.Load(shipLogsConfig(t, root, logs, spoolDir, extra), true); err != nil {
			t.Fatal(err)
		}
		write(50)
	}
	time.Sleep(300 * time.Millisecond)
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	resetDefaultLogger(t)
	fs := &objectstore.FileStore{Root: root}
	if err := fs.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, l := range (&flakyStore{FileStore: fs}).lines(t) {
		var rec struct{ Line string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("shipped %q: %v", l, err)
		}
		seen[rec.Line]++
	}
	for i := 1; i <= n; i++ {
		if c := seen[fmt.Sprintf("line %d", i)]; c != 1 {
			t.Errorf("line %d shipped %d times", i, c)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct lines shipped, want %d", len(seen), n)
	}
}

func TestShipLogsConfigErrors(t *testing.T) {
	root, logs := t.TempDir(), t.TempDir()
	spool := func() string { return filepath.Join(t.TempDir(), "spool") }
	for _, tc := range []struct {
		name  string
		extra map[string]any
		want  string
	}{
		{"no files", map[string]any{"files": []string{}}, "at least one glob"},
		{"bad glob", map[string]any{"files": []string{"/var/log/[.log"}}, "syntax error in pattern"},
		{"undeclared store", map[string]any{"store": "other"}, `"other"`},
		{"max_line too small", map[string]any{"max_line": 10}, "max_line 10"},
		{"bad on_full", map[string]any{"on_full": "block"}, "on_full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := shipLogsConfig(t, root, logs, spool(), tc.extra)
			err := caddy.Validate(mustConfig(t, cfg))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("a glob that matches the spool", func(t *testing.T) {
		dir := spool()
		cfg := shipLogsConfig(t, root, logs, dir, map[string]any{"files": []string{filepath.Join(filepath.Dir(dir), "*", "*.log")}})
		if err := caddy.Validate(mustConfig(t, cfg)); err == nil || !strings.Contains(err.Error(), "matches the files of the spool directory") {
			t.Fatalf("error %v, want one naming the spool the glob matches", err)
		}
	})
	t.Run("two shippers of one name", func(t *testing.T) {
		var cfg map[string]any
		_ = json.Unmarshal(shipLogsConfig(t, root, logs, spool(), nil), &cfg)
		apps := cfg["apps"].(map[string]any)
		sh := apps["ship_logs"].(map[string]any)["shippers"].([]any)
		other := map[string]any{}
		for k, v := range sh[0].(map[string]any) {
			other[k] = v
		}
		other["spool_dir"] = spool()
		apps["ship_logs"].(map[string]any)["shippers"] = append(sh, other)
		b, _ := json.Marshal(cfg)
		if err := caddy.Validate(mustConfig(t, b)); err == nil || !strings.Contains(err.Error(), "another ship_logs is named") {
			t.Fatalf("error %v, want one naming the shared name", err)
		}
	})
	t.Run("two shippers on one spool", func(t *testing.T) {
		dir := spool()
		var cfg map[string]any
		_ = json.Unmarshal(shipLogsConfig(t, root, logs, dir, nil), &cfg)
		apps := cfg["apps"].(map[string]any)
		sh := apps["ship_logs"].(map[string]any)["shippers"].([]any)
		apps["ship_logs"].(map[string]any)["shippers"] = append(sh, sh[0])
		b, _ := json.Marshal(cfg)
		if err := caddy.Validate(mustConfig(t, b)); err == nil || !strings.Contains(err.Error(), "spool") {
			t.Fatalf("error %v, want one naming the shared spool", err)
		}
	})
}

func mustConfig(t *testing.T, b []byte) *caddy.Config {
	t.Helper()
	cfg := new(caddy.Config)
	if err := json.Unmarshal(b, cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestShipLogsRelativeGlobIsAbsolute: a relative glob is taken from the
// working directory at load, not wherever a later lookup happens.
func TestShipLogsRelativeGlobIsAbsolute(t *testing.T) {
	s := &FileShipper{Files: []string{"logs/*.log"}}
	s.Store, s.SpoolDir = "logs", filepath.Join(t.TempDir(), "spool")
	app := &objectstore.App{}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	root := t.TempDir()
	if err := json.Unmarshal([]byte(fmt.Sprintf(`{"stores":{"logs":{"backend":"file","root":%q}}}`, root)), app); err != nil {
		t.Fatal(err)
	}
	if err := app.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.provision(ctx, app); err != nil {
		t.Fatal(err)
	}
	defer s.Writer.Cleanup()
	wd, _ := os.Getwd()
	if s.Files[0] != filepath.Join(wd, "logs/*.log") || s.Name != DefaultFilesName {
		t.Errorf("files %q, name %q", s.Files, s.Name)
	}
}
