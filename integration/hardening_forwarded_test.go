package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
)

// Regression tests, through the built binary, for forwarded-header
// defects found by attacking caddy-lb from outside.

// forwardedEcho trusts 127.0.0.2 (a second loopback client address) and
// a CDN's CF-Connecting-IP from it, and tells the backend, beside the
// forwarding headers, what the {http.forwarded.*} placeholders said.
const forwardedEcho = `{
	{{.Global}}
}
:{{.HTTPPort}} {
	forwarded {
		trusted_proxies 127.0.0.2
		accept x_forwarded forwarded
		client_header CF-Connecting-IP
	}
	reverse_proxy {{.X.upstream}} {
		header_up X-Seen-Proto "[{http.forwarded.proto}]"
		header_up X-Seen-Host "[{http.forwarded.host}]"
		header_up X-Seen-Port "[{http.forwarded.port}]"
		header_up X-Seen-Client "[{http.forwarded.client_ip}]"
	}
}
`

// rawExchangeFrom sends raw bytes to addr from the local address from
// (127.0.0.2 is a second client on loopback) and returns the answer with
// its body read in full (the connection is closed by the request, or by
// the server after a refusal).
func rawExchangeFrom(t *testing.T, from, addr, raw string) *http.Response {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

// TestForwardedSendsWhatItsPlaceholdersSay sends hostile and proxied
// requests and checks what the backend gets: no CDN client header from an
// untrusted client, a trusted CDN's client believed, no empty
// X-Forwarded-Host for HTTP/1.0 without Host, and placeholders equal to
// what is sent upstream.
func TestForwardedSendsWhatItsPlaceholdersSay(t *testing.T) {
	backend := harness.StartBackends(t, 1)[0]
	c := harness.StartCaddyWith(t, forwardedEcho, map[string]any{"upstream": backend.Addr})
	addr := "127.0.0.1:" + strconv.Itoa(c.HTTPPort)
	cdnSpoof := "CF-Connecting-IP: 6.6.6.1\r\nCF-Connecting-IPv6: 2001:db8::666\r\nFastly-Client-IP: 6.6.6.2\r\n" +
		"Akamai-Client-IP: 6.6.6.3\r\nX-Azure-ClientIP: 6.6.6.4\r\nX-Original-Forwarded-For: 6.6.6.5\r\n" +
		"X-Remote-Addr: 6.6.6.6\r\nX-Remote-IP: 6.6.6.7\r\nX-Originating-IP: 6.6.6.8\r\nX-Envoy-External-Address: 6.6.6.9\r\n"
	for _, tc := range []struct {
		name, from, request string
		client              string // the first X-Forwarded-For entry
		host                string // X-Forwarded-Host, "" for none
	}{
		{"untrusted client with CDN headers", "127.0.0.1", "GET /headers HTTP/1.1\r\nHost: app.test\r\n" + cdnSpoof + "X-Forwarded-For: 6.6.6.10\r\n\r\n", "127.0.0.1", "app.test"},
		{"HTTP/1.0 without Host", "127.0.0.1", "GET /headers HTTP/1.0\r\n\r\n", "127.0.0.1", ""},
		{"trusted proxy, X-Forwarded-For only", "127.0.0.2", "GET /headers HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n", "198.51.100.1", "app.test"},
		{"trusted proxy, both formats", "127.0.0.2", "GET /headers HTTP/1.1\r\nHost: internal\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example:8443\r\n" +
			"Forwarded: for=198.51.100.1;proto=https;host=\"shop.example:8443\"\r\n\r\n", "198.51.100.1", "shop.example:8443"},
		// With both formats accepted, what only one states is not believed.
		{"trusted proxy, host in one format only", "127.0.0.2", "GET /headers HTTP/1.1\r\nHost: internal\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Host: shop.example\r\n\r\n", "198.51.100.1", "internal"},
		{"trusted proxy, Forwarded only", "127.0.0.2", "GET /headers HTTP/1.1\r\nHost: internal\r\nForwarded: for=198.51.100.2;proto=https;host=a.example\r\n\r\n", "198.51.100.2", "internal"},
		{"trusted CDN's client header", "127.0.0.2", "GET /headers HTTP/1.1\r\nHost: app.test\r\nCF-Connecting-IP: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n", "203.0.113.9", "app.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawExchangeFrom(t, tc.from, addr, tc.request)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var got map[string]string
			if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			for _, name := range []string{"Cf-Connecting-Ip", "Cf-Connecting-Ipv6", "Fastly-Client-Ip", "Akamai-Client-Ip", "X-Azure-Clientip",
				"X-Original-Forwarded-For", "X-Remote-Addr", "X-Remote-Ip", "X-Originating-Ip", "X-Envoy-External-Address"} {
				if v, ok := got[name]; ok {
					t.Errorf("%s: %q reached the backend", name, v)
				}
			}
			if first, _, _ := strings.Cut(got["X-Forwarded-For"], ","); first != tc.client {
				t.Errorf("X-Forwarded-For %q, want %s first", got["X-Forwarded-For"], tc.client)
			}
			if h, ok := got["X-Forwarded-Host"]; h != tc.host || ok != (tc.host != "") {
				t.Errorf("X-Forwarded-Host %q (sent %v), want %q", h, ok, tc.host)
			}
			// What the placeholders say is what the backend was told.
			for _, p := range []struct{ seen, sent string }{
				{"X-Seen-Proto", "X-Forwarded-Proto"}, {"X-Seen-Host", "X-Forwarded-Host"}, {"X-Seen-Port", "X-Forwarded-Port"},
			} {
				if got[p.seen] != "["+got[p.sent]+"]" {
					t.Errorf("placeholder %s, but %s: %q", got[p.seen], p.sent, got[p.sent])
				}
			}
			if got["X-Seen-Client"] != "["+tc.client+"]" {
				t.Errorf("{http.forwarded.client_ip} %s, want [%s]", got["X-Seen-Client"], tc.client)
			}
		})
	}
}

// TestForwardingTrailersNeverReachTheBackend: a chunked body's trailer
// fields named like forwarding headers were passed to the upstream.
func TestForwardingTrailersNeverReachTheBackend(t *testing.T) {
	trailers := make(chan http.Header, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		trailers <- r.Trailer.Clone()
	}))
	t.Cleanup(upstream.Close)
	c := harness.StartCaddyWith(t, forwardedEcho, map[string]any{"upstream": strings.TrimPrefix(upstream.URL, "http://")})
	raw := "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n" +
		"Trailer: X-Forwarded-For, X-Real-IP, Forwarded, CF-Connecting-IP, X-Checksum\r\n\r\n" +
		"5\r\nhello\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.7\r\nForwarded: for=6.6.6.8\r\nCF-Connecting-IP: 6.6.6.9\r\nX-Checksum: abc\r\n\r\n"
	resp := rawExchangeFrom(t, "127.0.0.1", "127.0.0.1:"+strconv.Itoa(c.HTTPPort), raw)
	resp.Body.Close()
	select {
	case got := <-trailers:
		if len(got) != 1 || got.Get("X-Checksum") != "abc" {
			t.Fatalf("the backend's trailer: %v, want only X-Checksum", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the backend got no request (status %d)", resp.StatusCode)
	}
}
