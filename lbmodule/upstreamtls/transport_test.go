package upstreamtls

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
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
