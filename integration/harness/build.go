// Package harness runs caddy-lb end to end for the tests in integration/:
// the custom Caddy binary with a Caddyfile rendered onto free loopback
// ports, demo backends (integration/demo/backend), a bounded load
// generator and per-user HTTP clients with their own cookie jars.
//
// Processes are started through internal/testproc: they are killed when the
// test ends and their logs are printed when it fails.
package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// binaryBuild builds one program at most once per test process.
type binaryBuild struct {
	envVar  string // a prebuilt binary, when set
	pkg     string // package to build, relative to the module root
	outName string // file name under <module root>/bin/test/

	once sync.Once
	path string
	err  error
}

var (
	caddyBuild   = &binaryBuild{envVar: "CADDYLB_BIN", pkg: "./xcaddy", outName: "caddy"}
	backendBuild = &binaryBuild{envVar: "CADDYLB_BACKEND_BIN", pkg: "./integration/demo/backend", outName: "backend"}
)

// CaddyBinary is the custom Caddy to test: $CADDYLB_BIN when set (make test
// sets it), else `go build ./xcaddy`, built once per test process.
func CaddyBinary(t testing.TB) string {
	t.Helper()
	return caddyBuild.get(t)
}

// BackendBinary is the demo backend: $CADDYLB_BACKEND_BIN when set, else
// built once per test process.
func BackendBinary(t testing.TB) string {
	t.Helper()
	return backendBuild.get(t)
}

func (b *binaryBuild) get(t testing.TB) string {
	t.Helper()
	b.once.Do(func() { b.path, b.err = b.locate() })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func (b *binaryBuild) locate() (string, error) {
	if p := os.Getenv(b.envVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s: %w", b.envVar, err)
		}
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return b.build(root)
}

// build compiles into <root>/bin/test/ under a name of its own, then renames
// into place: test processes of several packages may build at once, and a
// rename never leaves a half-written binary for another one to run. A fixed
// place, unlike a temporary directory, leaves nothing behind per run.
func (b *binaryBuild) build(root string) (string, error) {
	dir := filepath.Join(root, "bin", "test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("building %s: %w", b.pkg, err)
	}
	final := filepath.Join(dir, b.outName)
	tmp := final + ".tmp" + strconv.Itoa(os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, b.pkg)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build -o %s %s: %v\n%s", tmp, b.pkg, err, out.String())
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("building %s: %w", b.pkg, err)
	}
	return final, nil
}

// ModuleRoot is the directory of the go.mod above the working directory
// (go test runs each package in its own directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("finding the module root: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the module root: no go.mod above the working directory")
		}
		dir = parent
	}
}
