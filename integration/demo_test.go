package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddylb/caddylb/integration/harness"
)

// TestDemoConfigIsValid loads the `make run` config with the built
// binary (every module provisioned, nothing started), from an empty
// working directory, as on a fresh machine.
func TestDemoConfigIsValid(t *testing.T) {
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(harness.CaddyBinary(t), "validate", "--config", filepath.Join(root, "integration", "demo", "Caddyfile"))
	cmd.Dir = t.TempDir()
	cmd.Env = append(cmd.Environ(), "UPLOAD_SIGNING_SECRET=demo-only-upload-secret-change-me", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Fatalf("caddy validate of the demo Caddyfile: %v\n%s", err, out)
	}
}
