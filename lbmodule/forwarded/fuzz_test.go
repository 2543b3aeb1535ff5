package forwarded

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// checkNode fails t when n is not a node the parsers may return: an
// address without zone, or a well-formed obfuscated identifier, or unknown.
func checkNode(t *testing.T, n Node) {
	t.Helper()
	switch {
	case n.Addr.IsValid():
		if n.Addr.Zone() != "" || n.Obfuscated != "" {
			t.Fatalf("node %+v: address with zone or obfuscated name", n)
		}
	case n.Obfuscated != "":
		if !isObfuscated(n.Obfuscated) {
			t.Fatalf("node %+v: bad obfuscated identifier", n)
		}
	}
}

func FuzzParseXForwardedFor(f *testing.F) {
	for _, seed := range [][2]string{
		{"192.0.2.43, 2001:db8:cafe::17", ""},
		{"203.0.113.7, 10.0.0.1", "10.0.0.2"},
		{"[2001:db8::1]:4711, 192.0.2.1:80", " , ,"},
		{"unknown, _hidden, garbage", "fe80::1%eth0"},
		{"::ffff:192.0.2.1", "[::1]:_x"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		hops, truncated, err := ParseXForwardedFor([]string{a, b})
		if err != nil {
			if !errors.Is(err, ErrHeaderTooLong) || len(a)+len(b) <= MaxHeaderBytes {
				t.Fatalf("err = %v for %d bytes", err, len(a)+len(b))
			}
			return
		}
		if len(hops) > MaxHops || truncated && len(hops) != MaxHops {
			t.Fatalf("%d hops, truncated %v", len(hops), truncated)
		}
		for _, n := range hops {
			checkNode(t, n)
		}
		wire := AppendXForwardedFor(nil, hops)
		if len(wire) > MaxHeaderBytes {
			return // "x" became "unknown" often enough to pass the limit
		}
		again, truncated, err := ParseXForwardedFor([]string{string(wire)})
		if err != nil || truncated || !slices.Equal(again, hops) {
			t.Fatalf("%q parsed as %v; written %q, parsed back %v (truncated %v, err %v)",
				[]string{a, b}, hops, wire, again, truncated, err)
		}
	})
}

func FuzzParseForwarded(f *testing.F) {
	for _, seed := range [][2]string{
		{`for="_gazonk"`, `For="[2001:db8:cafe::17]:4711"`},
		{`for=192.0.2.60;proto=http;by=203.0.113.43`, `for=192.0.2.43, for=198.51.100.17`},
		{`for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com`, ""},
		{`for="\_a\"b", for=unknown;ext="x,y;z"`, `for=2001:db8::1;for=1.2.3.4`},
		{`for="192.0.2.1:80";host="[2001:db8::1]:8443"`, `for="unterminated, for=1.2.3.4`},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		elems, truncated, err := ParseForwarded([]string{a, b})
		if err != nil {
			if !errors.Is(err, ErrHeaderTooLong) || len(a)+len(b) <= MaxHeaderBytes {
				t.Fatalf("err = %v for %d bytes", err, len(a)+len(b))
			}
			return
		}
		if len(elems) > MaxHops || truncated && len(elems) != MaxHops {
			t.Fatalf("%d elements, truncated %v", len(elems), truncated)
		}
		for _, e := range elems {
			checkNode(t, e.For)
			checkNode(t, e.By)
			if e.Proto != "" && !isScheme(e.Proto) {
				t.Fatalf("element %+v: bad proto", e)
			}
			if e.Host != "" && !validHost(e.Host) {
				t.Fatalf("element %+v: bad host", e)
			}
		}
		wire := AppendForwarded(nil, elems)
		if len(wire) > MaxHeaderBytes {
			return
		}
		again, truncated, err := ParseForwarded([]string{string(wire)})
		if err != nil || truncated || !slices.Equal(again, elems) {
			t.Fatalf("%q parsed as %+v; written %q, parsed back %+v (truncated %v, err %v)",
				[]string{a, b}, elems, wire, again, truncated, err)
		}
	})
}

// FuzzServeHTTP feeds arbitrary forwarding headers from a trusted peer
// and checks what the handler hands to reverse_proxy: Caddy's client_ip is
// an address, and X-Forwarded-For (once reverse_proxy appends the peer)
// names the same hops as Forwarded, which carries the same scheme and
// host as X-Forwarded-Proto and -Host (trap 8).
func FuzzServeHTTP(f *testing.F) {
	f.Add("198.51.100.9, 10.0.0.2", "", "https", "app.example", "", "")
	f.Add("", `for=198.51.100.9;proto=https;host="app.example:8443", for=10.0.0.2`, "", "", "", "")
	f.Add("198.51.100.9", "for=198.51.100.9", "http", "a.example", "8080", "")
	f.Add("garbage, 10.0.0.2", `for="[2001:db8::1]:80"`, "HTTPS", "[2001:db8::1]:443", "0", "")
	f.Add("198.51.100.9, 10.0.0.2", "", "https", "app.example", "", "203.0.113.7")
	f.Add("", "", "", "", "", "2001:db8::7")
	f.Add("198.51.100.9", "for=198.51.100.9", "", "", "", "203.0.113.7, 1.2.3.4")
	f.Add("198.51.100.9", "", "", "", "", "fe80::1%eth0")
	h := provision(f, &Handler{
		TrustedProxiesRaw: trusting("10.0.0.0/8", "2001:db8::/32"),
		Accept:            []string{"x_forwarded", "forwarded"},
		Emit:              []string{"x_forwarded", "forwarded"},
		ClientHeaders:     []string{"CF-Connecting-IP"},
	})
	f.Fuzz(func(t *testing.T, xff, fwd, xfp, xfh, xfport, cdn string) {
		r := request("10.0.0.1:1234",
			"X-Forwarded-For", xff, "Forwarded", fwd,
			"X-Forwarded-Proto", xfp, "X-Forwarded-Host", xfh, "X-Forwarded-Port", xfport,
			"Cf-Connecting-Ip", cdn)
		res, err := tryServe(h, r)
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && he.StatusCode == http.StatusBadRequest {
			return // the formats disagreed: refused
		}
		if err != nil {
			t.Fatalf("ServeHTTP: %v", err)
		}
		if s, _ := res.clientIP.(string); s != "" && !netipValid(s) {
			t.Fatalf("client_ip = %#v, not an address", res.clientIP)
		}
		sentXFF := "10.0.0.1" // as reverse_proxy appends it
		if v := res.header.Get("X-Forwarded-For"); v != "" {
			sentXFF = v + ", " + sentXFF
		}
		xffHops, _, err := ParseXForwardedFor([]string{sentXFF})
		if err != nil {
			t.Fatalf("sent X-Forwarded-For %q: %v", sentXFF, err)
		}
		elems, _, err := ParseForwarded(res.header["Forwarded"])
		if err != nil || len(elems) != len(xffHops) {
			t.Fatalf("sent Forwarded %q (%v) and X-Forwarded-For %q differ in length", res.header["Forwarded"], err, sentXFF)
		}
		for i, e := range elems {
			if e.For != xffHops[i] {
				t.Fatalf("hop %d: Forwarded %v, X-Forwarded-For %v", i, e.For, xffHops[i])
			}
		}
		if p := res.header.Get("X-Forwarded-Proto"); elems[0].Proto != p || !isScheme(p) {
			t.Fatalf("proto: Forwarded %q, X-Forwarded-Proto %q", elems[0].Proto, p)
		}
		if hv := res.header.Get("X-Forwarded-Host"); elems[0].Host != hv {
			t.Fatalf("host: Forwarded %q, X-Forwarded-Host %q", elems[0].Host, hv)
		}
		if p := res.header.Get("X-Forwarded-Port"); !validPort(p) {
			t.Fatalf("X-Forwarded-Port %q", p)
		}
		if a, err := netip.ParseAddr(strings.TrimSpace(cdn)); err == nil && a.Zone() == "" && res.placeholders["client_ip"] != a.Unmap().String() {
			t.Fatalf("client_header %q from a trusted peer, client %q", cdn, res.placeholders["client_ip"])
		}
		if _, ok := res.header["Cf-Connecting-Ip"]; ok {
			t.Fatal("CF-Connecting-IP passed on")
		}
	})
}

func netipValid(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// FuzzPeerNode: the one parse of r.RemoteAddr finds the peer the long
// way finds (reverse_proxy's split), and its text is that address.
func FuzzPeerNode(f *testing.F) {
	for _, s := range peerNodeCases {
		f.Add(s.remoteAddr)
	}
	f.Fuzz(func(t *testing.T, remoteAddr string) {
		n, text, unix := peerNode(remoteAddr)
		if unix != (remoteAddr == "@") {
			t.Fatalf("%q: unix %v", remoteAddr, unix)
		}
		if want := splitPeer(remoteAddr); !unix && n != want {
			t.Fatalf("%q: peerNode %+v, the long way %+v", remoteAddr, n, want)
		}
		checkNode(t, n)
		if text != "" {
			if a, err := netip.ParseAddr(text); err != nil || a != n.Addr || !a.Is4() || a.String() != text {
				t.Fatalf("%q: text %q does not spell the IPv4 address %v", remoteAddr, text, n.Addr)
			}
		}
	})
}
