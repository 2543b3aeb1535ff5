package forwarded

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// provision provisions and validates h the way Caddy loads a module.
func provision(t testing.TB, h *Handler) *Handler {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	h.logger = zap.NewNop() // the debug lines about hostile input would flood the output
	return h
}

// trusting returns trusted_proxies as JSON for a static list of ranges.
func trusting(ranges ...string) []json.RawMessage {
	raw, _ := json.Marshal(map[string]any{"source": "static", "ranges": ranges})
	return []json.RawMessage{raw}
}

// result is what the next handler sees after the forwarded handler ran.
type result struct {
	header       http.Header
	clientIP     any
	trusted      any
	placeholders map[string]string
}

// serve runs r through h as Caddy's server would prepare it.
func serve(t testing.TB, h *Handler, r *http.Request) result {
	t.Helper()
	res, err := tryServe(h, r)
	if err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return res
}

// tryServe is serve for requests the handler may refuse.
func tryServe(h *Handler, r *http.Request) (result, error) {
	repl := caddy.NewReplacer()
	w := httptest.NewRecorder()
	r = caddyhttp.PrepareRequest(r, repl, w, nil)
	caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, strings.Split(r.RemoteAddr, ":")[0]) // as the server would
	var res result
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		res.header = r.Header.Clone()
		for k, v := range r.Header {
			if v == nil {
				res.header[k] = nil // Clone turns nil into empty
			}
		}
		res.clientIP = caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey)
		res.trusted = caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey)
		res.placeholders = map[string]string{}
		for _, k := range []string{"client_ip", "client_port", "proto", "host", "port"} {
			res.placeholders[k], _ = repl.GetString("http.forwarded." + k)
		}
		return nil
	})
	err := h.ServeHTTP(w, r, next)
	return res, err
}

func request(remoteAddr string, headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	r.RemoteAddr = remoteAddr
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header[headers[i]] = append(r.Header[headers[i]], headers[i+1])
	}
	return r
}

// forwardingKeys lists the header keys of the forwarding family in h.
func forwardingKeys(h http.Header) []string {
	var keys []string
	for k := range h {
		if classifyHeader(k) != notForwarding {
			keys = append(keys, k)
		}
	}
	return keys
}

func assertHeader(t *testing.T, h http.Header, key string, want ...string) {
	t.Helper()
	got, ok := h[key]
	if len(want) == 0 {
		if ok {
			t.Errorf("%s = %q, want absent", key, got)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %q, want %q", key, got, want)
	}
}

// spoofed is every forwarding header a client could send, in several
// spellings (traps 2, 3 and 6).
var spoofed = []string{
	"X-Forwarded-For", "6.6.6.6",
	"X_forwarded_for", "6.6.6.7", // X_Forwarded_For, as Go keys it
	"X-Forwarded_for", "6.6.6.8", // X-Forwarded_For
	"X-Forwarded-Proto", "https",
	"X-Forwarded-Host", "evil.example",
	"X-Forwarded-Port", "444",
	"X_forwarded_port", "445",
	"X-Forwarded-Prefix", "/evil",
	"X-Forwarded-Scheme", "https",
	"X-Forwarded-Ssl", "on",
	"X-Real-Ip", "6.6.6.9",
	"True-Client-Ip", "6.6.6.10",
	"Forwarded", "for=6.6.6.11;proto=https",
	"Cf-Connecting-Ip", "6.6.6.12",
	"Fastly-Client-Ip", "6.6.6.13",
	"X-Original-Forwarded-For", "6.6.6.14",
	"X-Envoy-External-Address", "6.6.6.15",
	"Akamai-Client-Ip", "6.6.6.16",
}

func TestUntrustedPeerIsTheClient(t *testing.T) {
	h := provision(t, &Handler{TrustedProxiesRaw: trusting("10.0.0.0/8"), Emit: []string{"x_forwarded", "forwarded"}})
	res := serve(t, h, request("192.0.2.1:4711", spoofed...))

	for _, k := range forwardingKeys(res.header) {
		switch k {
		case "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "Forwarded":
		default:
			t.Errorf("%s = %q reached the upstream from an untrusted client", k, res.header[k])
		}
	}
	assertHeader(t, res.header, "X-Forwarded-For") // reverse_proxy writes the peer
	assertHeader(t, res.header, "X-Forwarded-Proto", "http")
	assertHeader(t, res.header, "X-Forwarded-Host", "example.com")
	assertHeader(t, res.header, "X-Forwarded-Port", "80")
	assertHeader(t, res.header, "Forwarded", "for=192.0.2.1;host=example.com;proto=http")
	if res.clientIP != "192.0.2.1" || res.trusted != true {
		t.Errorf("client_ip = %v, trusted_proxy = %v; want 192.0.2.1, true", res.clientIP, res.trusted)
	}
	want := map[string]string{"client_ip": "192.0.2.1", "client_port": "4711", "proto": "http", "host": "example.com", "port": "80"}
	if !reflect.DeepEqual(res.placeholders, want) {
		t.Errorf("placeholders = %v, want %v", res.placeholders, want)
	}
}

func TestNothingTrustedByDefault(t *testing.T) {
	h := provision(t, &Handler{})
	for _, peer := range []string{"10.0.0.1:1", "127.0.0.1:1", "[::1]:1"} {
		res := serve(t, h, request(peer, "X-Forwarded-For", "203.0.113.7", "X-Forwarded-Proto", "https"))
		want := strings.Trim(peer[:strings.LastIndexByte(peer, ':')], "[]")
		if res.clientIP != want || res.header.Get("X-Forwarded-Proto") != "http" {
			t.Errorf("peer %s: client_ip %v, proto %q; want %s, http", peer, res.clientIP, res.header.Get("X-Forwarded-Proto"), want)
		}
	}
}

func TestClientIsRightMostUntrusted(t *testing.T) {
	h := provision(t, &Handler{TrustedProxiesRaw: trusting("10.0.0.0/8", "2001:db8:1::/48")})
	tests := []struct {
		name, peer string
		xff        []string
		client     string
		sentXFF    []string
	}{
		// trap 1: the left-most entry is the client's to write
		{"spoofed left-most", "10.0.0.1:1", []string{"203.0.113.7, 198.51.100.9"}, "198.51.100.9", []string{"198.51.100.9"}},
		{"trusted chain", "10.0.0.1:1", []string{"198.51.100.9, 10.0.0.3", "10.0.0.2"}, "198.51.100.9",
			[]string{"198.51.100.9, 10.0.0.3, 10.0.0.2"}},
		{"all trusted: left-most", "10.0.0.1:1", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3", []string{"10.0.0.3, 10.0.0.2"}},
		{"trusted peer, no header", "10.0.0.1:1", nil, "10.0.0.1", nil},
		{"ipv6 and ports", "[2001:db8:1::1]:443", []string{"[2001:db8:2::7]:5555, [2001:db8:1::2]:80"}, "2001:db8:2::7",
			[]string{"2001:db8:2::7, 2001:db8:1::2"}},
		{"ipv4-mapped proxy", "10.0.0.1:1", []string{"198.51.100.9, ::ffff:10.0.0.2"}, "198.51.100.9",
			[]string{"198.51.100.9, 10.0.0.2"}},
		// an entry that cannot be checked stops the walk: the client is
		// unknown, and client_ip is empty, never a trusted hop's address
		{"garbage", "10.0.0.1:1", []string{"198.51.100.9, <garbage>"}, "", []string{"unknown"}},
		{"unknown", "10.0.0.1:1", []string{"198.51.100.9, unknown, 10.0.0.2"}, "", []string{"unknown, 10.0.0.2"}},
		{"too long", "10.0.0.1:1", []string{strings.Repeat("10.0.0.2, ", MaxHeaderBytes/10+1)}, "", []string{"unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			for _, v := range tt.xff {
				hdr = append(hdr, "X-Forwarded-For", v)
			}
			res := serve(t, h, request(tt.peer, hdr...))
			if res.clientIP != tt.client {
				t.Errorf("client_ip = %v, want %s", res.clientIP, tt.client)
			}
			assertHeader(t, res.header, "X-Forwarded-For", tt.sentXFF...)
		})
	}
}

func TestTooManyTrustedHopsMakeTheClientUnknown(t *testing.T) {
	h := provision(t, &Handler{TrustedProxiesRaw: trusting("10.0.0.0/8")})
	entries := make([]string, 100)
	for i := range entries {
		entries[i] = "10.0.1.1"
	}
	res := serve(t, h, request("10.0.0.1:1", "X-Forwarded-For", strings.Join(entries, ",")))
	if res.placeholders["client_ip"] != "unknown" || res.clientIP != "" {
		t.Errorf("placeholder %q, client_ip %v; want unknown and an empty client_ip", res.placeholders["client_ip"], res.clientIP)
	}
	// the 64 hops read, and "unknown" for what lies beyond them
	sent := strings.Split(res.header.Get("X-Forwarded-For"), ", ")
	if len(sent) != MaxHops+1 || sent[0] != "unknown" || sent[1] != "10.0.1.1" {
		t.Errorf("sent %d hops besides the peer, starting %q; want %d starting unknown", len(sent), sent[:2], MaxHops+1)
	}
}

func TestTrustedHops(t *testing.T) {
	h := provision(t, &Handler{TrustedHops: 2})
	res := serve(t, h, request("198.51.100.1:1", "X-Forwarded-For", "203.0.113.9, 192.0.2.5, 192.0.2.6"))
	if res.clientIP != "192.0.2.5" {
		t.Errorf("client_ip = %v, want 192.0.2.5 (peer and one entry trusted by count)", res.clientIP)
	}
	assertHeader(t, res.header, "X-Forwarded-For", "192.0.2.5, 192.0.2.6")
}

func TestSingleValuedHeadersAreOverwritten(t *testing.T) {
	// trap 4: the right-most value, written by the nearest trusted proxy,
	// is taken, and one value is sent.
	h := provision(t, &Handler{TrustedProxiesRaw: trusting("10.0.0.0/8")})
	res := serve(t, h, request("10.0.0.1:1",
		"X-Forwarded-For", "198.51.100.9",
		"X-Forwarded-Proto", "http, https",
		"X-Forwarded-Host", "evil.example, app.example",
		"X-Forwarded-Port", "1, 8443"))
	assertHeader(t, res.header, "X-Forwarded-Proto", "https")
	assertHeader(t, res.header, "X-Forwarded-Host", "app.example")
	assertHeader(t, res.header, "X-Forwarded-Port", "8443")

	// invalid values are ignored, not passed on
	res = serve(t, h, request("10.0.0.1:1",
		"X-Forwarded-Proto", "javascript:alert(1)",
		"X-Forwarded-Host", "evil/path",
		"X-Forwarded-Port", "99999"))
	assertHeader(t, res.header, "X-Forwarded-Proto", "http")
	assertHeader(t, res.header, "X-Forwarded-Host", "example.com")
	assertHeader(t, res.header, "X-Forwarded-Port", "80")
}

func TestPortTheClientUsed(t *testing.T) {
	h := provision(t, &Handler{TrustedProxiesRaw: trusting("10.0.0.0/8")})
	tls := &tls.ConnectionState{HandshakeComplete: true}
	tests := []struct {
		name              string
		r                 *http.Request
		proto, host, port string
	}{
		{"plain, default port", request("192.0.2.1:1"), "http", "example.com", "80"},
		{"TLS ends here", withTLS(request("192.0.2.1:1"), tls, "example.com"), "https", "example.com", "443"},
		{"TLS on a non-default port", withTLS(request("192.0.2.1:1"), tls, "example.com:8443"), "https", "example.com:8443", "8443"},
		{"proxy says https, host without port", request("10.0.0.1:1", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example"),
			"https", "app.example", "443"},
		{"proxy's host has the port", request("10.0.0.1:1", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example:9443"),
			"https", "app.example:9443", "9443"},
		{"proxy's port wins", request("10.0.0.1:1", "X-Forwarded-Proto", "https", "X-Forwarded-Port", "8443"),
			"https", "example.com", "8443"},
		{"proxy passed the client's Host on", withTLS(request("10.0.0.1:1", "X-Forwarded-Proto", "https"), nil, "example.com:8443"),
			"https", "example.com:8443", "8443"},
		{"untrusted port claim", request("192.0.2.1:1", "X-Forwarded-Port", "8443"), "http", "example.com", "80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := serve(t, h, tt.r)
			assertHeader(t, res.header, "X-Forwarded-Proto", tt.proto)
			assertHeader(t, res.header, "X-Forwarded-Host", tt.host)
			assertHeader(t, res.header, "X-Forwarded-Port", tt.port)
			if p := res.placeholders; p["proto"] != tt.proto || p["host"] != tt.host || p["port"] != tt.port {
				t.Errorf("placeholders %v", p)
			}
		})
	}
}

func withTLS(r *http.Request, state *tls.ConnectionState, host string) *http.Request {
	r.TLS = state
	r.Host = host
	return r
}

func TestConnectionCannotRemoveForwardingHeaders(t *testing.T) {
	// trap 5
	h := provision(t, &Handler{})
	res := serve(t, h, request("192.0.2.1:1",
		"Connection", "keep-alive, X-Forwarded-For, x_forwarded_port",
		"Connection", "Forwarded, X-Real-IP",
		"Keep-Alive", "timeout=5"))
	assertHeader(t, res.header, "Connection", "keep-alive")
	res = serve(t, h, request("192.0.2.1:1", "Connection", "X-Forwarded-Proto"))
	assertHeader(t, res.header, "Connection")
}

func TestPassableHeadersFromTrustedPeersOnly(t *testing.T) {
	h := provision(t, &Handler{TrustedProxiesRaw: trusting("10.0.0.0/8")})
	headers := []string{"X-Forwarded-Prefix", "/app", "X_forwarded_prefix", "/evil", "X-Forwarded-Ssl", "on", "X-Real-Ip", "198.51.100.9"}
	res := serve(t, h, request("10.0.0.1:1", headers...))
	assertHeader(t, res.header, "X-Forwarded-Prefix", "/app")
	assertHeader(t, res.header, "X_forwarded_prefix")
	assertHeader(t, res.header, "X-Forwarded-Ssl") // contradicts X-Forwarded-Proto, never passed
	assertHeader(t, res.header, "X-Real-Ip")
	res = serve(t, h, request("192.0.2.1:1", headers...))
	assertHeader(t, res.header, "X-Forwarded-Prefix")
}

func TestForwardedFromTrustedPeer(t *testing.T) {
	h := provision(t, &Handler{
		TrustedProxiesRaw: trusting("10.0.0.0/8"),
		Accept:            []string{"forwarded"},
		Emit:              []string{"x_forwarded", "forwarded"},
	})
	res := serve(t, h, request("10.0.0.1:1",
		"Forwarded", `for=203.0.113.7, for="[2001:db8::9]:4711";proto=https;host=app.example, for=10.0.0.2;proto=http`,
		"X-Forwarded-For", "6.6.6.6")) // not accepted: ignored and replaced
	if res.clientIP != "2001:db8::9" || res.placeholders["client_port"] != "4711" {
		t.Errorf("client_ip = %v, client_port %q", res.clientIP, res.placeholders["client_port"])
	}
	assertHeader(t, res.header, "X-Forwarded-For", "2001:db8::9, 10.0.0.2")
	assertHeader(t, res.header, "X-Forwarded-Proto", "https")
	assertHeader(t, res.header, "X-Forwarded-Host", "app.example")
	assertHeader(t, res.header, "X-Forwarded-Port", "443")
	assertHeader(t, res.header, "Forwarded", `for="[2001:db8::9]";host=app.example;proto=https, for=10.0.0.2, for=10.0.0.1`)
}

func TestObfuscatedClient(t *testing.T) {
	h := provision(t, &Handler{TrustedProxiesRaw: trusting("10.0.0.0/8"), Accept: []string{"forwarded"}, Emit: []string{"forwarded"}})
	res := serve(t, h, request("10.0.0.1:1", "Forwarded", `for=_hidden;proto=https, for=10.0.0.2`))
	if res.placeholders["client_ip"] != "_hidden" || res.clientIP != "" {
		t.Errorf("placeholder %q, client_ip %v; want _hidden and an empty client_ip", res.placeholders["client_ip"], res.clientIP)
	}
	assertHeader(t, res.header, "Forwarded", `for=_hidden;host=example.com;proto=https, for=10.0.0.2, for=10.0.0.1`)
	// x_forwarded not emitted: present but nil, so reverse_proxy adds none
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"} {
		if v, ok := res.header[k]; !ok || v != nil {
			t.Errorf("%s = %#v, want present and nil", k, v)
		}
	}
	assertHeader(t, res.header, "X-Forwarded-Port")
}

func TestBothFormatsMustAgree(t *testing.T) {
	// trap 8
	h := provision(t, &Handler{TrustedProxiesRaw: trusting("10.0.0.0/8"), Accept: []string{"x_forwarded", "forwarded"}})
	tests := []struct {
		name    string
		headers []string
		client  string
		proto   string
	}{
		{"agree", []string{"X-Forwarded-For", "198.51.100.9", "X-Forwarded-Proto", "https", "Forwarded", "for=198.51.100.9;proto=https"},
			"198.51.100.9", "https"},
		// a field only one format states could be the client's, passed on
		// by a proxy that writes only the other format: not believed
		{"only one chain", []string{"X-Forwarded-Proto", "https", "Forwarded", "for=198.51.100.9"}, "198.51.100.9", "http"},
		{"host from one format only", []string{"X-Forwarded-For", "198.51.100.9", "Forwarded", "for=198.51.100.9;host=evil.example"},
			"198.51.100.9", "http"},
		// disagreement: refused, never the peer taken for the client
		{"clients differ", []string{"X-Forwarded-For", "198.51.100.9", "Forwarded", "for=203.0.113.7"}, "", ""},
		{"protos differ", []string{"X-Forwarded-For", "198.51.100.9", "X-Forwarded-Proto", "http", "Forwarded", "for=198.51.100.9;proto=https"},
			"", ""},
		{"hosts differ", []string{"X-Forwarded-Host", "a.example", "Forwarded", "for=198.51.100.9;host=b.example"}, "", ""},
		{"ports differ", []string{"X-Forwarded-Port", "443", "Forwarded", `for=198.51.100.9;host="a.example:8443"`}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tryServe(h, request("10.0.0.1:1", tt.headers...))
			if tt.client == "" {
				var he caddyhttp.HandlerError
				if !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest || res.header != nil {
					t.Fatalf("disagreeing formats: %v, want a 400 before the next handler", err)
				}
				return
			}
			if err != nil || res.clientIP != tt.client || res.header.Get("X-Forwarded-Proto") != tt.proto {
				t.Errorf("client_ip = %v, proto %q, %v; want %s, %s", res.clientIP, res.header.Get("X-Forwarded-Proto"), err, tt.client, tt.proto)
			}
			if h := res.header.Get("X-Forwarded-Host"); strings.Contains(h, "evil") {
				t.Errorf("X-Forwarded-Host %q believed from one format", h)
			}
		})
	}
}

func TestUnixPeer(t *testing.T) {
	untrusted := provision(t, &Handler{Emit: []string{"x_forwarded", "forwarded"}})
	res := serve(t, untrusted, request("@", "X-Forwarded-For", "203.0.113.7"))
	if res.clientIP != "" || res.placeholders["client_ip"] != "unknown" {
		t.Errorf("client_ip = %v, placeholder %q; want empty (nothing Caddy guessed from the headers) and unknown", res.clientIP, res.placeholders["client_ip"])
	}
	assertHeader(t, res.header, "X-Forwarded-For", "unknown")
	assertHeader(t, res.header, "Forwarded", "for=unknown;host=example.com;proto=http")

	trusted := provision(t, &Handler{TrustedUnix: true, TrustedProxiesRaw: trusting("10.0.0.0/8"), Emit: []string{"x_forwarded", "forwarded"}})
	res = serve(t, trusted, request("@", "X-Forwarded-For", "203.0.113.7, 10.0.0.2", "X-Forwarded-Proto", "https"))
	if res.clientIP != "203.0.113.7" {
		t.Errorf("client_ip = %v, want 203.0.113.7", res.clientIP)
	}
	// reverse_proxy appends nothing for a unix peer, so the chain is whole
	assertHeader(t, res.header, "X-Forwarded-For", "203.0.113.7, 10.0.0.2")
	assertHeader(t, res.header, "Forwarded", "for=203.0.113.7;host=example.com;proto=https, for=10.0.0.2")
}

func TestProvisionRefusesTrustingEveryone(t *testing.T) {
	// trap 7
	for _, cidr := range []string{"0.0.0.0/0", "::/0"} {
		h := &Handler{TrustedProxiesRaw: trusting("10.0.0.0/8", cidr)}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := h.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "trusts every address") {
			t.Errorf("%s: Provision err = %v, want a refusal", cidr, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, h := range []*Handler{
		{Accept: []string{"x-forwarded"}},
		{Emit: []string{"rfc7239"}},
		{TrustedProxiesRaw: trusting("10.0.0.0/33")},
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := h.Provision(ctx); err == nil {
			t.Errorf("%+v: Provision accepted it", h)
		}
		cancel()
	}
	for _, n := range []int{-1, MaxHops + 1} {
		if err := (&Handler{TrustedHops: n}).Validate(); err == nil {
			t.Errorf("trusted_hops %d: Validate accepted it", n)
		}
	}
}

func TestClassifyHeader(t *testing.T) {
	tests := []struct {
		key  string
		want headerClass
	}{
		{"X-Forwarded-For", managed},
		{"X_forwarded_for", managed}, // X_Forwarded_For as Go keys it
		{"X-Forwarded_for", managed},
		{"x-forwarded-proto", managed},
		{"X-Forwarded-Host", managed},
		{"X-Forwarded-Port", managed},
		{"Forwarded", managed},
		{"X-Forwarded-Ssl", contradicting},
		{"X-Forwarded-Scheme", contradicting},
		{"X-Forwarded-Protocol", contradicting},
		{"X-Real-Ip", contradicting},
		{"X_real_ip", contradicting},
		{"True-Client-Ip", contradicting},
		{"X-Client-Ip", contradicting},
		{"Client-Ip", contradicting},
		{"X-Cluster-Client-Ip", contradicting},
		{"Front-End-Https", contradicting},
		{"X-Forwarded-Prefix", passable},
		{"X-Forwarded-Tls-Client-Cert", passable},
		{"X-Forwarded", contradicting},
		{"Forwarded-For", contradicting},
		{"Cf-Connecting-Ip", contradicting},
		{"CF-Connecting-IPv6", contradicting},
		{"Cf-Pseudo-Ipv4", contradicting},
		{"Fastly-Client-Ip", contradicting},
		{"Akamai-Client-Ip", contradicting},
		{"Fly-Client-Ip", contradicting},
		{"X-Azure-Clientip", contradicting},
		{"X-Azure-Socketip", contradicting},
		{"X-Original-Forwarded-For", contradicting},
		{"X_original_forwarded_for", contradicting},
		{"X-Remote-Addr", contradicting},
		{"X-Remote-Ip", contradicting},
		{"X-Originating-Ip", contradicting},
		{"X-Envoy-External-Address", contradicting},
		{"X-Proxyuser-Ip", contradicting},
		{"X-Appengine-User-Ip", contradicting},
		{"Cloudfront-Viewer-Address", contradicting},
		{"Incap-Client-Ip", contradicting},
		{"X-Real-Client-Ip", contradicting},
		{"X-Client-Real-Ip", contradicting},
		{"X-Forwarded-", notForwarding},
		{"Forwarded-By", notForwarding},
		{"Accept-Encoding", notForwarding},
		{"Authorization", notForwarding},
		{"Cache-Control", notForwarding},
		{"Connection", notForwarding},
		{"Cookie", notForwarding},
		{"X-Request-Id", notForwarding},
	}
	for _, tt := range tests {
		if got := classifyHeader(tt.key); got != tt.want {
			t.Errorf("classifyHeader(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
	// Every listed name, in every spelling: a quick filter (length,
	// first letter) must not hide one.
	for _, names := range contradictingNames {
		for _, n := range names {
			for _, k := range []string{n, http.CanonicalHeaderKey(n), strings.ReplaceAll(strings.ToUpper(n), "-", "_")} {
				if got := classifyHeader(k); got != contradicting {
					t.Errorf("classifyHeader(%q) = %d, want contradicting", k, got)
				}
			}
		}
	}
}

// TestClientHeaderOfATrustedCDN: client_header is believed from trusted
// peers only, when it holds one address, and replaces the client the
// chain named; the trusted hops stay in the chain sent upstream.
func TestClientHeaderOfATrustedCDN(t *testing.T) {
	h := provision(t, &Handler{TrustedProxiesRaw: trusting("10.0.0.0/8"), ClientHeaders: []string{"cf-connecting-ip", "CF-Connecting-IPv6"},
		Emit: []string{FormatXForwarded, FormatForwarded}})
	for _, tc := range []struct {
		name     string
		r        *http.Request
		clientIP string
		xff      []string // as the handler leaves it for reverse_proxy (which appends the peer)
	}{
		{"trusted CDN edge", request("10.0.0.1:1", "Cf-Connecting-Ip", "203.0.113.7", "X-Forwarded-For", "198.51.100.1"),
			"203.0.113.7", []string{"203.0.113.7"}},
		{"no chain at all", request("10.0.0.1:1", "Cf-Connecting-Ip", "203.0.113.7"),
			"203.0.113.7", []string{"203.0.113.7"}},
		{"trusted hops stay", request("10.0.0.1:1", "Cf-Connecting-Ip", "203.0.113.7", "X-Forwarded-For", "198.51.100.1, 10.0.0.9"),
			"203.0.113.7", []string{"203.0.113.7, 10.0.0.9"}},
		{"the second header", request("10.0.0.1:1", "Cf-Connecting-Ipv6", "2001:db8::7"),
			"2001:db8::7", []string{"2001:db8::7"}},
		{"from an untrusted client", request("192.0.2.1:1", "Cf-Connecting-Ip", "203.0.113.7"),
			"192.0.2.1", nil},
		{"a list is not believed", request("10.0.0.1:1", "Cf-Connecting-Ip", "203.0.113.7, 6.6.6.6", "X-Forwarded-For", "198.51.100.1"),
			"198.51.100.1", []string{"198.51.100.1"}},
		{"two lines are not believed", request("10.0.0.1:1", "Cf-Connecting-Ip", "203.0.113.7", "Cf-Connecting-Ip", "6.6.6.6", "X-Forwarded-For", "198.51.100.1"),
			"198.51.100.1", []string{"198.51.100.1"}},
		{"a name is not believed", request("10.0.0.1:1", "Cf-Connecting-Ip", "evil", "X-Forwarded-For", "198.51.100.1"),
			"198.51.100.1", []string{"198.51.100.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := serve(t, h, tc.r)
			if res.clientIP != tc.clientIP || res.placeholders["client_ip"] != tc.clientIP {
				t.Fatalf("client_ip %v, placeholder %q; want %s", res.clientIP, res.placeholders["client_ip"], tc.clientIP)
			}
			if tc.xff != nil {
				assertHeader(t, res.header, "X-Forwarded-For", tc.xff...)
			}
			assertHeader(t, res.header, "Cf-Connecting-Ip") // removed either way
			if fwd := res.header.Get("Forwarded"); !strings.HasPrefix(fwd, "for="+strings.Trim(forwardedFor(tc.clientIP), "")) {
				t.Fatalf("Forwarded %q does not start with the client %s", fwd, tc.clientIP)
			}
		})
	}
	if _, err := canonicalClientHeaders([]string{"X-Forwarded-For"}); err == nil {
		t.Fatal("client_header X-Forwarded-For accepted")
	}
}

// forwardedFor is how Forwarded names an address.
func forwardedFor(ip string) string {
	if strings.Contains(ip, ":") {
		return `"[` + ip + `]"`
	}
	return ip
}

// TestForwardingTrailersAreDropped: a chunked body's trailer named like a
// forwarding header never reaches the upstream.
func TestForwardingTrailersAreDropped(t *testing.T) {
	h := provision(t, &Handler{})
	body := "5\r\nhello\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-Ip: 6.6.6.7\r\nForwarded: for=6.6.6.8\r\nX-Checksum: abc\r\n\r\n"
	raw := "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nTrailer: X-Forwarded-For, X-Real-Ip, Forwarded, X-Checksum\r\n\r\n" + body
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	r.RemoteAddr = "192.0.2.1:1"
	repl := caddy.NewReplacer()
	w := httptest.NewRecorder()
	r = caddyhttp.PrepareRequest(r, repl, w, nil)
	var trailer http.Header
	err = h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if _, err := io.ReadAll(r.Body); err != nil {
			return err
		}
		trailer = r.Trailer.Clone()
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(trailer) != 1 || trailer.Get("X-Checksum") != "abc" {
		t.Fatalf("trailer after the body: %v, want only X-Checksum", trailer)
	}
}

// TestNoHostNoForwardedHost: an HTTP/1.0 request without Host gets no
// X-Forwarded-Host (reverse_proxy would send an empty line), and the
// placeholders say what is sent.
func TestNoHostNoForwardedHost(t *testing.T) {
	h := provision(t, &Handler{})
	r := request("192.0.2.1:1")
	r.Host = ""
	res := serve(t, h, r)
	if v, ok := res.header["X-Forwarded-Host"]; !ok || v != nil {
		t.Fatalf("X-Forwarded-Host %q (present %v), want omitted (a nil value)", v, ok)
	}
	if res.placeholders["host"] != "" || res.placeholders["proto"] != "http" {
		t.Fatalf("placeholders %v", res.placeholders)
	}
}

// TestClientHeaderOfAnyNameIsRemovedFromUntrustedClients: a client_header
// the built-in family does not know is removed from everyone else like
// the rest, in every spelling, in headers, Connection tokens and
// trailers; from the trusted CDN it is read, then removed too.
func TestClientHeaderOfAnyNameIsRemovedFromUntrustedClients(t *testing.T) {
	h := provision(t, &Handler{TrustedProxiesRaw: trusting("10.0.0.0/8"), ClientHeaders: []string{"My-Cdn-Client"}})
	res := serve(t, h, request("192.0.2.1:1", "My-Cdn-Client", "6.6.6.6", "My_cdn_client", "6.6.6.7", "Connection", "My-Cdn-Client"))
	for k := range res.header {
		if h.names.class(k) == contradicting {
			t.Fatalf("%s reached the upstream from an untrusted client", k)
		}
	}
	if res.header.Get("Connection") != "" {
		t.Fatalf("Connection %q still names the client header", res.header.Get("Connection"))
	}
	if res.clientIP != "192.0.2.1" {
		t.Fatalf("client %v", res.clientIP)
	}
	res = serve(t, h, request("10.0.0.1:1", "My-Cdn-Client", "203.0.113.5"))
	if res.clientIP != "203.0.113.5" || res.header.Get("My-Cdn-Client") != "" {
		t.Fatalf("from the trusted CDN: client %v, header passed on %q", res.clientIP, res.header.Get("My-Cdn-Client"))
	}
	tr := http.Header{"My-Cdn-Client": {"6.6.6.8"}, "X-Checksum": {"a"}}
	h.names.removeForwardingTrailers(tr)
	if len(tr) != 1 {
		t.Fatalf("trailer %v", tr)
	}
	// A name configured with an underscore matches every spelling too.
	u := provision(t, &Handler{ClientHeaders: []string{"X-Edge_Client"}})
	res = serve(t, u, request("192.0.2.1:1", "X-Edge_client", "1", "X-Edge-Client", "2", "X_edge_client", "3"))
	for k := range res.header {
		if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "x-edge-client") {
			t.Fatalf("%s reached the upstream from an untrusted client", k)
		}
	}
}
