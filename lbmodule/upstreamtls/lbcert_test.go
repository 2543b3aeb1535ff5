package upstreamtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddypki"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"
)

// storageWithCA makes a file_system storage holding CA "local", as
// caddy-lb leaves it after its first start.
func storageWithCA(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	raw, _ := json.Marshal(map[string]string{"module": "file_system", "root": dir})
	ca := &caddypki.CA{StorageRaw: raw}
	if err := ca.Provision(ctx, "local", caddy.Log()); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestIssueBackendCert(t *testing.T) {
	storage := storageWithCA(t)
	out := filepath.Join(t.TempDir(), "tls")
	opts := backendCertOptions{caID: "local", outDir: out, sans: []string{"app1.internal", "10.0.0.5"}, lifetime: 720 * time.Hour, storageDir: storage}
	files, err := issueBackendCert(opts)
	if err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{out: 0o700 | os.ModeDir, files.key: 0o600, files.cert: 0o644, files.chain: 0o644, files.ca: 0o644} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode() != mode {
			t.Errorf("%s has mode %s, want %s", path, info.Mode(), mode)
		}
	}
	pair, err := tls.LoadX509KeyPair(files.chain, files.key)
	if err != nil {
		t.Fatalf("chain.pem and key.pem are not a pair: %v", err)
	}
	caPEM, _ := os.ReadFile(files.ca)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	for _, name := range []string{"app1.internal", "10.0.0.5"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("certificate does not verify for %s against ca.pem: %v", name, err)
		}
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < 720*time.Hour || got > 721*time.Hour {
		t.Errorf("lifetime %s, want 720h", got)
	}

	if _, err := issueBackendCert(opts); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second run: %v, want a refusal to overwrite", err)
	}
	opts.force = true
	again, err := issueBackendCert(opts)
	if err != nil {
		t.Fatalf("with --force: %v", err)
	}
	if again.pin == files.pin {
		t.Error("--force kept the old key")
	}
}

func TestIssueBackendCertRefuses(t *testing.T) {
	storage := storageWithCA(t)
	out := t.TempDir()
	tests := []struct {
		name string
		opts backendCertOptions
		want string
	}{
		{"no out", backendCertOptions{caID: "local", sans: []string{"a"}, lifetime: time.Hour, storageDir: storage}, "--out"},
		{"no san", backendCertOptions{caID: "local", outDir: out, lifetime: time.Hour, storageDir: storage}, "--san"},
		{"bad san", backendCertOptions{caID: "local", outDir: out, sans: []string{"a b"}, lifetime: time.Hour, storageDir: storage}, `"a b"`},
		{"no lifetime", backendCertOptions{caID: "local", outDir: out, sans: []string{"a"}, storageDir: storage}, "--lifetime"},
		{"storage without the CA", backendCertOptions{caID: "local", outDir: out, sans: []string{"a"}, lifetime: time.Hour, storageDir: t.TempDir()}, `no CA "local"`},
		{"another CA id", backendCertOptions{caID: "backends", outDir: out, sans: []string{"a"}, lifetime: time.Hour, storageDir: storage}, `no CA "backends"`},
		{"two storages", backendCertOptions{caID: "local", outDir: out, sans: []string{"a"}, lifetime: time.Hour, storageDir: storage, configFile: "Caddyfile"}, "give one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := issueBackendCert(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a refused run left %d files in --out", len(entries))
	}
}
