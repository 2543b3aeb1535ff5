package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// passthroughCaddyfile serves one HTTPS port: SNI pass.test is passed
// through, undecrypted, to nginx backends with PROXY protocol v2 and a
// sticky policy on the shared store; every other name is terminated by
// the HTTP sites (term.test, with the forwarded handler).
const passthroughCaddyfile = `{
	{{.Global}}
	session_store shared {{.X.store}}
	servers 127.0.0.1:{{.HTTPSPort}} {
		listener_wrappers {
			layer4 {
				@pass tls sni pass.test
				route @pass {
					proxy {
						proxy_protocol v2
						fail_duration 30s
						max_fails 1
						lb_try_duration 2s
						lb_try_interval 100ms
						lb_policy sticky {
							store shared
							secret ` + testSecret + `
						}
						{{range .X.pool}}upstream {{.}}
						{{end}}
					}
				}
			}
			tls
		}
	}
}
https://term.test:{{.HTTPSPort}} {
	tls internal
	forwarded
	reverse_proxy {{.X.backend}}
}
http://127.0.0.1:{{.HTTPPort}} {
	lb_dashboard
}
`

// passthroughShortCaddyfile is passthroughCaddyfile in the short form,
// caddy-lb's passthrough listener wrapper (PROXY v2 and the passive
// health checks are its defaults).
const passthroughShortCaddyfile = `{
	{{.Global}}
	session_store shared {{.X.store}}
	servers 127.0.0.1:{{.HTTPSPort}} {
		listener_wrappers {
			passthrough {
				pass.test {
					to{{range .X.pool}} {{.}}{{end}}
					lb_policy sticky {
						store shared
						secret ` + testSecret + `
					}
				}
			}
			tls
		}
	}
}
https://term.test:{{.HTTPSPort}} {
	tls internal
	forwarded
	reverse_proxy {{.X.backend}}
}
http://127.0.0.1:{{.HTTPPort}} {
	lb_dashboard
}
`

// passClient is a client connecting from ip (127.0.0.x) with SNI name.
func passClient(ip, name string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: d.DialContext,
			// The pass-through backends' certificates are self-signed and
			// term.test's is from Caddy's local CA: what is checked is who
			// answered (the certificate's name), not the chain.
			TLSClientConfig:   &tls.Config{ServerName: name, InsecureSkipVerify: true},
			DisableKeepAlives: true,
		},
	}
}

// passGet sends GET / through node with SNI name from ip and returns the
// body and the name of the certificate that answered.
func passGet(t *testing.T, node *harness.Caddy, ip, name, path string) (string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s", node.HTTPSPort, path), nil)
	req.Host = name
	resp, err := passClient(ip, name).Do(req)
	if err != nil {
		t.Fatalf("%s from %s: %v", name, ip, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s from %s: %d %s", name, ip, resp.StatusCode, body)
	}
	return string(body), resp.TLS.PeerCertificates[0].Subject.CommonName
}

// TestPassthroughBesideTermination: on one port, pass.test goes through
// undecrypted to nginx, which learns the client's address (127.0.0.2)
// from PROXY v2 while the TCP peer is caddy-lb; term.test is terminated
// and its backend is told the client in X-Forwarded-For. Two nodes on one
// Redis send each client IP to one backend; clients spread; a backend
// added by a reload moves no known client; a drained one gets no new
// client and keeps its own; a killed one's clients move, nobody else's.
func TestPassthroughBesideTermination(t *testing.T) {
	for name, tmpl := range map[string]string{"layer4": passthroughCaddyfile, "passthrough": passthroughShortCaddyfile} {
		t.Run(name, func(t *testing.T) { testPassthrough(t, tmpl) })
	}
}

func testPassthrough(t *testing.T, passthroughCaddyfile string) {
	redis := testproc.StartRedis(t)
	nginx := []*testproc.Proc{testproc.StartNginxTLS(t, "n1"), testproc.StartNginxTLS(t, "n2"), testproc.StartNginxTLS(t, "n3")}
	backends := harness.StartBackends(t, 1)
	data := map[string]any{
		"store":   "redis " + redis.Addr,
		"pool":    []string{nginx[0].Addr, nginx[1].Addr},
		"backend": backends[0].Addr,
	}
	nodes := []*harness.Caddy{harness.StartCaddyWith(t, passthroughCaddyfile, data), harness.StartCaddyWith(t, passthroughCaddyfile, data)}

	// Pass-through: nginx's own certificate, the client's address by PROXY v2.
	body, cn := passGet(t, nodes[0], "127.0.0.2", "pass.test", "/")
	if !strings.HasPrefix(cn, "n") || !strings.Contains(body, "client=127.0.0.2:") || !strings.Contains(body, "peer=127.0.0.1") {
		t.Fatalf("pass-through answer %q from certificate %q: want nginx's certificate, client 127.0.0.2, peer 127.0.0.1", body, cn)
	}
	// A name no route passes through and no site serves: refused by
	// Caddy's TLS, nothing reaches a backend.
	if _, err := passClient("127.0.0.2", "other.test").Get(fmt.Sprintf("https://127.0.0.1:%d/", nodes[0].HTTPSPort)); err == nil {
		t.Fatal("an unknown SNI was answered")
	}
	// Termination on the same port: caddy-lb's certificate, X-Forwarded-For.
	body, _ = passGet(t, nodes[0], "127.0.0.2", "term.test", "/headers")
	var seen map[string]string
	if err := json.Unmarshal([]byte(body), &seen); err != nil || seen["X-Forwarded-For"] != "127.0.0.2" || seen["X-Forwarded-Proto"] != "https" {
		t.Fatalf("terminated site: the backend was told %q", body)
	}

	// One client IP, one backend, through both nodes.
	backendOf := func(node *harness.Caddy, ip string) string {
		body, _ := passGet(t, node, ip, "pass.test", "/")
		return strings.Fields(body)[0]
	}
	bound := map[string]string{}
	spread := map[string]int{}
	for i := 2; i < 42; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i)
		b := backendOf(nodes[i%2], ip)
		for range 3 {
			for _, node := range nodes {
				if again := backendOf(node, ip); again != b {
					t.Fatalf("client %s: %s, then %s", ip, b, again)
				}
			}
		}
		bound[ip] = b
		spread[b]++
	}
	if len(spread) != 2 {
		t.Fatalf("40 client IPs over two backends: %v", spread)
	}
	// The bindings are in the admin API of either node.
	look := adminJSON(t, nodes[1], http.MethodGet, "/lb/sessions?key=127.0.0.2", "", http.StatusOK)
	if !strings.Contains(look, `"key_mode":"layer4 client_ip"`) {
		t.Fatalf("/lb/sessions for a pass-through client: %s", look)
	}
	ups := adminJSON(t, nodes[0], http.MethodGet, "/lb/upstreams", "", http.StatusOK)
	if !strings.Contains(ups, `"address":"`+nginx[0].Addr+`"`) || !strings.Contains(ups, `"passthrough":true`) {
		t.Fatalf("/lb/upstreams lacks the pass-through pool: %s", ups)
	}
	checkPassthroughDashboard(t, nodes[0], nginx[0].Addr, nginx[1].Addr)

	// A third backend joins: no known client moves.
	data["pool"] = []string{nginx[0].Addr, nginx[1].Addr, nginx[2].Addr}
	for _, node := range nodes {
		node.ReloadWith(t, passthroughCaddyfile, data)
	}
	for ip, b := range bound {
		if got := backendOf(nodes[0], ip); got != b {
			t.Fatalf("client %s moved from %s to %s when a backend joined", ip, b, got)
		}
	}

	// Drain n1 through node 1: no new client goes there; its own stay.
	adminJSON(t, nodes[0], http.MethodPost, "/lb/upstreams/drain", `{"address": "`+nginx[0].Addr+`"}`, http.StatusOK)
	time.Sleep(300 * time.Millisecond)
	for i := 100; i < 130; i++ {
		if b := backendOf(nodes[1], fmt.Sprintf("127.0.0.%d", i)); b == "backend=n1" {
			t.Fatalf("a new client went to the drained n1")
		}
	}
	for ip, b := range bound {
		if got := backendOf(nodes[1], ip); got != b {
			t.Fatalf("client %s left %s while it drains: %s", ip, b, got)
		}
	}
	adminJSON(t, nodes[0], http.MethodDelete, "/lb/upstreams/drain", `{"address": "`+nginx[0].Addr+`"}`, http.StatusOK)

	// Kill n2: its clients move, nobody else's.
	nginx[1].Kill()
	for ip, b := range bound {
		var got string
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for ctx.Err() == nil {
			resp, err := passClient(ip, "pass.test").Get(fmt.Sprintf("https://127.0.0.1:%d/", nodes[0].HTTPSPort))
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				got = strings.Fields(string(body))[0]
				break
			}
			time.Sleep(100 * time.Millisecond) // the dial to the dead backend fails once, then it is marked down
		}
		cancel()
		if b != "backend=n2" && got != b {
			t.Fatalf("client %s of %s moved to %s when n2 died", ip, b, got)
		}
		if b == "backend=n2" && got == b {
			t.Fatalf("client %s still reached the killed n2", ip)
		}
	}
}

// behindProxyCaddyfile reads PROXY protocol on the HTTP port from the
// listed front proxy only (127.0.0.5), and refuses a PROXY header from
// anyone else.
const behindProxyCaddyfile = `{
	{{.Global}}
	servers 127.0.0.1:{{.HTTPPort}} {
		listener_wrappers {
			proxy_protocol {
				allow 127.0.0.5/32
				fallback_policy reject
			}
		}
	}
}
http://front.test:{{.HTTPPort}} {
	forwarded
	reverse_proxy {{.X.backend}}
}
`

// TestBehindHAProxyWithProxyProtocol puts caddy-lb behind a Debian
// HAProxy in mode tcp sending PROXY v2 from 127.0.0.5: the backend is
// told the original client (127.0.0.2); a PROXY header from a source not
// listed is refused, and that source's plain requests still work with
// its own address.
func TestBehindHAProxyWithProxyProtocol(t *testing.T) {
	backends := harness.StartBackends(t, 1)
	node := harness.StartCaddyWith(t, behindProxyCaddyfile, map[string]any{"backend": backends[0].Addr})
	front := testproc.StartHAProxyTCP(t, fmt.Sprintf("127.0.0.1:%d", node.HTTPPort), "127.0.0.5")

	headersVia := func(addr, from string) map[string]string {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/headers", nil)
		req.Host = "front.test"
		req.Header.Set("X-Forwarded-For", "6.6.6.6") // a spoof the forwarded handler must drop
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET via %s from %s: %v", addr, from, err)
		}
		defer resp.Body.Close()
		var seen map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&seen); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET via %s from %s: %d %v", addr, from, resp.StatusCode, err)
		}
		return seen
	}
	if seen := headersVia(front.Addr, "127.0.0.2"); seen["X-Forwarded-For"] != "127.0.0.2" {
		t.Fatalf("through HAProxy the backend was told %v, want X-Forwarded-For 127.0.0.2", seen)
	}
	direct := fmt.Sprintf("127.0.0.1:%d", node.HTTPPort)
	if seen := headersVia(direct, "127.0.0.3"); seen["X-Forwarded-For"] != "127.0.0.3" {
		t.Fatalf("a direct client was told %v, want its own address", seen)
	}

	// A PROXY header from 127.0.0.3, which is not the listed front proxy.
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", direct)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "PROXY TCP4 6.6.6.6 127.0.0.1 4444 %d\r\nGET /headers HTTP/1.1\r\nHost: front.test\r\nConnection: close\r\n\r\n", node.HTTPPort)
	reply, readErr := io.ReadAll(conn)
	t.Logf("a PROXY header from 127.0.0.3: %q (%v)", reply, readErr)
	if strings.Contains(string(reply), "6.6.6.6") || strings.HasPrefix(string(reply), "HTTP/1.1 200") {
		t.Fatalf("a PROXY header from an unlisted source was honoured: %q", reply)
	}
}

// TestReencryptSendsProxyProtocol: a terminated site re-encrypts to nginx
// with transport reencrypt and proxy_protocol v2, so a backend that reads
// PROXY protocol learns the client (127.0.0.2) on the TLS connection too.
func TestReencryptSendsProxyProtocol(t *testing.T) {
	backend, cert := testproc.StartNginxTLSCert(t, "tlsbackend")
	node := harness.StartCaddyWith(t, `{
	{{.Global}}
}
http://app.test:{{.HTTPPort}} {
	reverse_proxy {{.X.backend}} {
		transport reencrypt {
			tls_trust_pool file {{.X.cert}}
			proxy_protocol v2
		}
	}
}
`, map[string]any{"backend": backend.Addr, "cert": cert})
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
	req, _ := http.NewRequest(http.MethodGet, node.URL("/"), nil)
	req.Host = "app.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "client=127.0.0.2:") {
		t.Fatalf("reencrypt with PROXY v2: %d %q, want nginx to see client 127.0.0.2", resp.StatusCode, body)
	}
}

// checkPassthroughDashboard reads node's lb_dashboard data: a
// pass-through row per backend, each with the connections this node
// sent it, and the layer4 policy's outcomes.
func checkPassthroughDashboard(t *testing.T, node *harness.Caddy, addrs ...string) {
	t.Helper()
	resp, body := harness.Get(t, http.DefaultClient, node.URL("/data"))
	var v struct {
		Upstreams []struct {
			Address        string   `json:"address"`
			Kind           string   `json:"kind"`
			RequestsPerSec *float64 `json:"requests_per_s"`
			BoundSessions  int64    `json:"bound_sessions"`
		} `json:"upstreams"`
		Policies []struct {
			Name     string           `json:"name"`
			Kind     string           `json:"kind"`
			Outcomes map[string]int64 `json:"outcomes"`
		} `json:"policies"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &v) != nil {
		t.Fatalf("dashboard data: %s %.300s", resp.Status, body)
	}
	var bound int64
	for _, addr := range addrs {
		found := false
		for _, u := range v.Upstreams {
			if u.Address == addr && u.Kind == "passthrough" {
				found = true
				bound += u.BoundSessions
				if u.RequestsPerSec == nil || *u.RequestsPerSec <= 0 {
					t.Errorf("dashboard row of %s: no connections counted", addr)
				}
			}
		}
		if !found {
			t.Errorf("the dashboard has no pass-through row for %s: %.400s", addr, body)
		}
	}
	if bound != 40 {
		t.Errorf("the dashboard counts %d bound pass-through clients, want the 40", bound)
	}
	for _, p := range v.Policies {
		if p.Kind == "passthrough" && p.Outcomes["hit"] > 0 && p.Outcomes["new"] > 0 && strings.HasPrefix(p.Name, "layer4 shared ") {
			return
		}
	}
	t.Errorf("the dashboard lacks the layer4 policy's outcomes: %+v", v.Policies)
}
