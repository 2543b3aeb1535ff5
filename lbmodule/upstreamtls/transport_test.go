package upstreamtls

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func TestRefuseUnsafeOptions(t *testing.T) {
	tests := []struct {
		name string
		set  func(r *Reencrypt)
		want string // "" means allowed
	}{
		{"defaults", func(*Reencrypt) {}, ""},
		{"skip verify", func(r *Reencrypt) { r.TLS.InsecureSkipVerify = true }, "tls_insecure_skip_verify"},
		{"skip verify with pins", func(r *Reencrypt) { r.TLS.InsecureSkipVerify = true; r.PinSPKI = []string{testPin} }, "tls_insecure_skip_verify"},
		{"except ports", func(r *Reencrypt) { r.TLS.ExceptPorts = []string{"80"} }, "never speaks plain HTTP"},
		{"h2c", func(r *Reencrypt) { r.Versions = []string{"h2c", "2"} }, "h2c is plain text"},
		{"http3", func(r *Reencrypt) { r.Versions = []string{"3"} }, "versions 3"},
		{"network proxy", func(r *Reencrypt) { r.NetworkProxyRaw = json.RawMessage(`{"from":"url"}`) }, "network_proxy"},
		{"two client certificates", func(r *Reencrypt) { r.ClientCertInternal = "local"; r.TLS.ClientCertificateFile = "c.pem" }, "keep one"},
		{"lifetime too short", func(r *Reencrypt) { r.ClientCertLifetime = caddy.Duration(minClientCertLifetime - 1) }, "minimum"},
		{"empty verify name", func(r *Reencrypt) { r.VerifyNames = map[string]string{"a:1": ""} }, `verify_names "a:1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Reencrypt{ClientCertLifetime: caddy.Duration(defaultClientCertLifetime)}
			r.TLS = new(reverseproxy.TLSConfig)
			tt.set(r)
			err := r.refuseUnsafeOptions()
			if tt.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestEnableH2CRefused(t *testing.T) {
	if err := new(Reencrypt).EnableH2C(); err == nil {
		t.Fatal("EnableH2C accepted: h2c would be plain text")
	}
}

// Loading tls_trust_pool clears its raw config; the pool must still be
// what is trusted afterwards, and nothing else.
func TestProvisionWithTrustPoolOnly(t *testing.T) {
	ca, other := newTestCA(t, "pool"), newTestCA(t, "other")
	pemPath := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	r := new(Reencrypt)
	if err := r.UnmarshalCaddyfile(caddyfile.NewTestDispenser("reencrypt {\n tls_trust_pool file " + pemPath + "\n}")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := r.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if r.TrustInternal != "" {
		t.Errorf("trust_internal %q was added beside tls_trust_pool", r.TrustInternal)
	}
	good, _ := ca.serverLeaf(t, time.Now(), time.Hour)
	foreign, _ := other.serverLeaf(t, time.Now(), time.Hour)
	if err := r.verifier.verify([]*x509.Certificate{good, ca.inter}, "127.0.0.1"); err != nil {
		t.Errorf("a leaf of the pool's CA: %v", err)
	}
	if err := r.verifier.verify([]*x509.Certificate{foreign, other.inter}, "127.0.0.1"); reasonOf(err) != reasonUnknownAuthority {
		t.Errorf("a leaf of another CA: %v, want unknown_authority", err)
	}
}
