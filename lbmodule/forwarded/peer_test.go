package forwarded

import (
	"net/netip"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

var peerNodeCases = []struct {
	remoteAddr string
	node       Node
	text       string
}{
	{"192.0.2.1:443", Node{Addr: netip.MustParseAddr("192.0.2.1"), Port: 443}, "192.0.2.1"},
	{"[2001:db8::1]:8080", Node{Addr: netip.MustParseAddr("2001:db8::1"), Port: 8080}, ""},
	{"[fe80::1%eth0]:80", Node{Addr: netip.MustParseAddr("fe80::1"), Port: 80}, ""}, // zone dropped, as reverse_proxy does
	{"[::ffff:192.0.2.1]:80", Node{Addr: netip.MustParseAddr("::ffff:192.0.2.1"), Port: 80}, ""},
	{"192.0.2.1:0", Node{Addr: netip.MustParseAddr("192.0.2.1")}, "192.0.2.1"},
	{"192.0.2.1:65536", Node{Addr: netip.MustParseAddr("192.0.2.1")}, ""}, // port out of range: the address stays
	{"192.0.2.1:http", Node{Addr: netip.MustParseAddr("192.0.2.1")}, ""},
	{"[192.0.2.1]:80", Node{Addr: netip.MustParseAddr("192.0.2.1"), Port: 80}, ""},
	{"192.0.2.1:8]0", Node{}, ""}, // net.SplitHostPort refuses it, so does reverse_proxy
	{"192.0.2.1%eth0:80", Node{Addr: netip.MustParseAddr("192.0.2.1"), Port: 80}, ""},
	{"192.0.2.1:", Node{Addr: netip.MustParseAddr("192.0.2.1")}, ""},
	{"001.2.3.4:80", Node{Port: 80}, ""}, // not an address: no peer address, as the long way
	{"2001:db8::1:80", Node{}, ""},       // brackets missing: too many colons
	{"192.0.2.1", Node{}, ""},
	{"", Node{}, ""},
	{"@", Node{}, ""},
	{"example.com:80", Node{Port: 80}, ""},
}

func TestPeerNode(t *testing.T) {
	for _, tt := range peerNodeCases {
		n, text, unix := peerNode(tt.remoteAddr)
		if n != tt.node || text != tt.text || unix != (tt.remoteAddr == "@") {
			t.Errorf("peerNode(%q) = %+v, %q, %v; want %+v, %q", tt.remoteAddr, n, text, unix, tt.node, tt.text)
		}
		if tt.remoteAddr != "@" && splitPeer(tt.remoteAddr) != n {
			t.Errorf("peerNode(%q) = %+v; the long way says %+v", tt.remoteAddr, n, splitPeer(tt.remoteAddr))
		}
	}
}

func TestSetClientIPVar(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	for _, tt := range []struct {
		name string
		cur  any // Caddy's client_ip before; nil for none
		addr netip.Addr
		text string
		want string
	}{
		{"the peer, as Caddy wrote it", "192.0.2.1", v4, "192.0.2.1", "192.0.2.1"},
		{"the peer, no text", "192.0.2.1", v4, "", "192.0.2.1"},
		{"IPv6 kept", "2001:db8::1", v6, "", "2001:db8::1"},
		{"Caddy picked another address", "203.0.113.9", v4, "192.0.2.1", "192.0.2.1"},
		{"Caddy kept the IPv4-mapped form", "::ffff:192.0.2.1", v4, "", "192.0.2.1"},
		{"nothing set", nil, v6, "", "2001:db8::1"},
		{"not a string", 42, v4, "192.0.2.1", "192.0.2.1"},
		{"unknown client", "192.0.2.1", netip.Addr{}, "", ""},
		{"a prefix of the text is not the text", "192.0.2.1", netip.MustParseAddr("192.0.2.10"), "192.0.2.10", "192.0.2.10"},
	} {
		vars := map[string]any{}
		if tt.cur != nil {
			vars[caddyhttp.ClientIPVarKey] = tt.cur
		}
		setClientIPVar(vars, tt.addr, tt.text)
		if got := vars[caddyhttp.ClientIPVarKey]; got != tt.want {
			t.Errorf("%s: client_ip = %v; want %q", tt.name, got, tt.want)
		}
	}
}
