package caddyfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// FuzzAdapt feeds mutated Caddyfiles, seeded with every golden file, to
// the adapter: every caddy-lb directive, global option and guest module
// parser must refuse bad tokens with an error, never panic.
func FuzzAdapt(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.caddytest")
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		text, _, _ := strings.Cut(string(raw), "\n----------\n")
		f.Add(text)
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	f.Fuzz(func(t *testing.T, text string) {
		_, _, _ = adapter.Adapt([]byte(text), nil)
	})
}
