package integration

import (
	"context"
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
	build.Env = append(os.Environ(), "OUT="+out)
	if log, err := build.CombinedOutput(); err != nil {
		t.Fatalf("xcaddy/build.sh: %v\n%s", err, log)
	}

	// The build is optimised with caddy-lb's profile, as make build is.
	info, err := exec.CommandContext(ctx, "go", "version", "-m", out).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m %s: %v\n%s", out, err, info)
	}
	if want := "-pgo=" + filepath.Join(root, "xcaddy", "default.pgo"); !strings.Contains(string(info), want) {
		t.Errorf("the xcaddy build was not built with %s:\n%s", want, info)
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
