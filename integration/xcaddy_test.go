package integration

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
)

// TestXcaddyBuildHasEveryModule builds caddy-lb the way users do, with the
// real xcaddy tool and only the root package named, and checks that the
// modules arrive through it and that the build used caddy-lb's profile.
func TestXcaddyBuildHasEveryModule(t *testing.T) {
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// A cold xcaddy build compiles all of Caddy with -trimpath: minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	out := filepath.Join(t.TempDir(), "caddy")
	build := exec.CommandContext(ctx, "bash", filepath.Join(root, "xcaddy", "build.sh"))
	// The caller's XCADDY_GO_BUILD_FLAGS would replace the flags checked below.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XCADDY_GO_BUILD_FLAGS=") {
			build.Env = append(build.Env, kv)
		}
	}
	build.Env = append(build.Env, "OUT="+out)
	if log, err := build.CombinedOutput(); err != nil {
		t.Fatalf("xcaddy/build.sh: %v\n%s", err, log)
	}

	// The build is optimised with caddy-lb's profile, as make build is.
	info, err := exec.CommandContext(ctx, "go", "version", "-m", out).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m %s: %v\n%s", out, err, info)
	}
	// With -trimpath, Go records the profile's base name only.
	for _, want := range []string{"-pgo=default.pgo", "-trimpath=true", "-tags=nobadger,nomysql,nopgx"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("the xcaddy build lacks build setting %s (xcaddy's own flags, and caddy-lb's profile):\n%s", want, info)
		}
	}
	// -ldflags "-w -s", which Go does not record under -trimpath: no symbol table.
	if bin, err := elf.Open(out); err != nil {
		t.Errorf("reading %s: %v", out, err)
	} else {
		if bin.Section(".symtab") != nil {
			t.Errorf("the xcaddy build has a symbol table: xcaddy's -ldflags \"-w -s\" were not given")
		}
		bin.Close()
	}

	modules, err := exec.CommandContext(ctx, out, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("%s list-modules: %v\n%s", out, err, modules)
	}
	for _, want := range []string{
		"http.reverse_proxy.selection_policies.sticky",
		"http.reverse_proxy.selection_policies.cookie", // stock modules still there
	} {
		if !hasLine(string(modules), want) {
			t.Errorf("xcaddy build lacks module %s; list-modules:\n%s", want, modules)
		}
	}
}

func hasLine(s, line string) bool {
	for l := range strings.Lines(s) {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}
