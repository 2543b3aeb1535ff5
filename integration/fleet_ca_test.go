package integration

import (
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// fleetCACaddyfile is one node in front of a backend that requires the
// LB's client certificate. .X.shared names a storage directory the node
// shares with others; .X.pki loads the CA root from exported files.
const fleetCACaddyfile = `{
	{{if .X.shared}}{{.GlobalShared}}
	storage file_system "{{.X.shared}}"{{else}}{{.Global}}{{end}}
	session_store shared redis {{.X.redis}} {
		heartbeat 1s
	}
	{{.X.pki}}
}
:{{.HTTPPort}} {
	{{if .X.tls12}}handle /tls12 {
		reverse_proxy {{.X.tls12}} {
			transport reencrypt {
				{{.X.trust}}
				client_cert internal
			}
		}
	}
	{{end}}reverse_proxy {{.X.backend}} {
		lb_policy sticky {
			secret ` + testSecret + `
			store shared
		}
		transport reencrypt {
			{{.X.trust}}
			client_cert internal
		}
	}
}
`

// TestFleetOneCA puts four nodes in front of one backend that requires a
// client certificate from caddy-lb's internal CA: two share one storage
// directory, a third loads the root exported with `caddy lb-cert
// --export-root`; the backend accepts all three. A fourth with its own CA
// is refused: it logs that the backend refused its root, and /lb/fleet
// reports the pki.root drift naming it.
func TestFleetOneCA(t *testing.T) {
	redis := testproc.StartRedis(t)
	backend := testproc.FreeAddr(t)
	shared := t.TempDir()
	data := func(id string) map[string]any {
		return map[string]any{"shared": shared, "redis": redis.Addr, "backend": backend, "pki": "", "trust": "trust_internal", "id": id, "tls12": ""}
	}
	a := harness.StartCaddyNode(t, "node-a", fleetCACaddyfile, data("a"))
	// The CA now exists in the shared storage: issue the backend's
	// certificate from it.
	issued := filepath.Join(t.TempDir(), "tls")
	runLBCert(t, "--storage-dir", shared, "--out", issued, "--san", "127.0.0.1")
	tlsBackend(t, backend, &tls.Config{
		Certificates: []tls.Certificate{loadPair(t, issued)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    caPool(t, issued),
	}, true)
	b := harness.StartCaddyNode(t, "node-b", fleetCACaddyfile, data("b"))

	exported := filepath.Join(t.TempDir(), "ca")
	out := runLBCert(t, "--storage-dir", shared, "--out", exported, "--export-root")
	if !strings.Contains(out, "sha256 ") {
		t.Fatalf("lb-cert --export-root printed %q", out)
	}
	if st, err := os.Stat(filepath.Join(exported, "root.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("exported root key: %v %v", st, err)
	}
	cData := data("c")
	cData["shared"] = ""
	cData["pki"] = "pki {\n\t\tca local {\n\t\t\troot {\n\t\t\t\tcert " + filepath.Join(exported, "root.crt") + "\n\t\t\t\tkey " + filepath.Join(exported, "root.key") + "\n\t\t\t}\n\t\t}\n\t}"
	c := harness.StartCaddyNode(t, "node-c", fleetCACaddyfile, cData)

	for _, node := range []*harness.Caddy{a, b, c} {
		resp, body := getStatus(t, node.URL("/"))
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Client-CN") == "" {
			t.Fatalf("through %s: %d %q: the backend refused a node of the shared CA", node.AdminAddr, resp.StatusCode, body)
		}
	}

	// A node with a CA of its own: it verifies the backend with the
	// exported root file, but its client certificate chains to its own
	// root, which the backend does not trust.
	dData := data("d")
	dData["shared"] = ""
	dData["trust"] = "tls_trust_pool file " + filepath.Join(issued, "ca.pem")
	// The same backend speaking TLS 1.2 only, where the refusal comes
	// during the handshake rather than with the first read.
	backend12 := testproc.FreeAddr(t)
	tlsBackend(t, backend12, &tls.Config{
		Certificates: []tls.Certificate{loadPair(t, issued)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    caPool(t, issued),
		MaxVersion:   tls.VersionTLS12,
	}, true)
	dData["tls12"] = backend12
	d := harness.StartCaddyNode(t, "node-d", fleetCACaddyfile, dData)
	refused := func(path string) {
		t.Helper()
		resp, body := getStatus(t, d.URL(path))
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("%s through the node with its own CA: %d %q, want 502", path, resp.StatusCode, body)
		}
	}
	counted := func(up string) int {
		metrics := adminJSON(t, d, http.MethodGet, "/metrics", "", http.StatusOK)
		prefix := `caddylb_upstream_tls_handshake_failures_total{reason="client_cert_refused",upstream="` + up + `"} `
		for _, line := range strings.Split(metrics, "\n") {
			if v, ok := strings.CutPrefix(line, prefix); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		return 0
	}
	// TLS 1.2: the refusal comes in the handshake; one request, one count
	// (the dial counts it, RoundTrip must not again).
	refused("/tls12")
	if n := counted(backend12); n != 1 {
		t.Fatalf("one refused TLS 1.2 request counted %d times, want 1", n)
	}
	// TLS 1.3: the refusal is an alert after the handshake, which the
	// client usually reads with the response; when the server's close
	// wins the race the error names no refusal.
	// Within a few requests it is counted, never more than once each.
	sent := 0
	for sent < 10 && counted(backend) == 0 {
		refused("/")
		sent++
	}
	if n := counted(backend); n < 1 || n > sent {
		t.Fatalf("%d refused TLS 1.3 requests counted %d times", sent, n)
	}
	waitUntil(t, 3*time.Second, "refusal logged with the node and its root", func() bool {
		return logHas(d, "refused this node's client certificate", `"node":"node-d"`, `"root_sha256":"`)
	})
	for _, line := range strings.Split(d.Log(), "\n") {
		if strings.Contains(line, "refused this node's client certificate") {
			t.Logf("node-d: %s", line)
			break
		}
	}
	waitUntil(t, 5*time.Second, "pki.root drift naming node-d", func() bool {
		v, _ := getFleet(t, a)
		for _, dr := range v.Drift {
			if dr.Setting == "pki.root" && dr.Scope == "ca local" && len(dr.Values) == 2 &&
				strings.Join(dr.Values[0].Nodes, ",") == "node-a,node-b,node-c" && strings.Join(dr.Values[1].Nodes, ",") == "node-d" {
				return true
			}
		}
		return false
	})
}

// runLBCert runs `caddy lb-cert` with args and returns its output.
func runLBCert(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(harness.CaddyBinary(t), append([]string{"lb-cert"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("caddy lb-cert %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
