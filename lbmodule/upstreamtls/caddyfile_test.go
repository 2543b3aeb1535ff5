package upstreamtls

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

const testPin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name, input string
		want        string // JSON of the parsed transport
	}{
		{"bare", "reencrypt", `{"tls":{}}`},
		{"empty block", "reencrypt {\n}", `{"tls":{}}`},
		{"trust_internal default CA", "reencrypt {\n trust_internal\n}", `{"tls":{},"trust_internal":"local"}`},
		{"trust_internal named CA", "reencrypt {\n trust_internal backends\n}", `{"tls":{},"trust_internal":"backends"}`},
		{"client cert", "reencrypt {\n client_cert internal\n client_cert_lifetime 1h\n}", `{"tls":{},"client_cert_internal":"local","client_cert_lifetime":3600000000000}`},
		{"pins on one line and two", "reencrypt {\n pin_spki " + testPin + " sha256/" + testPin + "\n pin_spki " + testPin + "\n}",
			`{"tls":{},"pin_spki":["` + testPin + `","sha256/` + testPin + `","` + testPin + `"]}`},
		{"verify_name", "reencrypt {\n verify_name 10.0.0.5:8443 app1.internal\n}", `{"tls":{},"verify_names":{"10.0.0.5:8443":"app1.internal"}}`},
		{"http options interleaved", "reencrypt {\n dial_timeout 2s\n trust_internal\n tls_server_name {http.reverse_proxy.upstream.host}\n keepalive_idle_conns_per_host 64\n}",
			`{"tls":{"server_name":"{http.reverse_proxy.upstream.host}"},"keep_alive":{"max_idle_conns_per_host":64},"dial_timeout":2000000000,"trust_internal":"local"}`},
		{"http option with a block", "reencrypt {\n tls_trust_pool file {\n  pem_file /etc/ca.pem\n }\n pin_spki " + testPin + "\n}",
			`{"tls":{"ca":{"pem_files":["/etc/ca.pem"],"provider":"file"}},"pin_spki":["` + testPin + `"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := new(Reencrypt)
			if err := r.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatalf("UnmarshalCaddyfile: %v", err)
			}
			assertSameJSON(t, r, tt.want)
		})
	}
}

func assertSameJSON(t *testing.T, got any, want string) {
	t.Helper()
	gotJSON, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(gotJSON, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatalf("bad want JSON %s: %v", want, err)
	}
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	if string(aj) != string(bj) {
		t.Fatalf("parsed to\n%s\nwant\n%s", aj, bj)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{"inline argument", "reencrypt local", "in a block"},
		{"trust_internal two CAs", "reencrypt {\n trust_internal a b\n}", "at most one CA id"},
		{"client_cert without source", "reencrypt {\n client_cert\n}", "client_cert internal"},
		{"client_cert from a file", "reencrypt {\n client_cert /etc/c.pem\n}", "client_cert internal"},
		{"lifetime not a duration", "reencrypt {\n client_cert_lifetime soon\n}", `client_cert_lifetime: "soon" is not a positive duration`},
		{"lifetime missing", "reencrypt {\n client_cert_lifetime\n}", "wrong argument count"},
		{"pin missing", "reencrypt {\n pin_spki\n}", "at least one"},
		{"pin not base64", "reencrypt {\n pin_spki nope!\n}", `pin_spki "nope!"`},
		{"pin wrong size", "reencrypt {\n pin_spki AAAA\n}", "3 bytes"},
		{"verify_name one arg", "reencrypt {\n verify_name 10.0.0.5:8443\n}", "an upstream and a name"},
		{"verify_name twice", "reencrypt {\n verify_name a:1 x\n verify_name a:1 y\n}", "given twice"},
		{"unknown option goes to transport http", "reencrypt {\n tls_pin x\n}", "tls_pin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := new(Reencrypt).UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
