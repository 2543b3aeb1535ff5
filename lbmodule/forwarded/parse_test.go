package forwarded

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func ip(s string) Node { return Node{Addr: netip.MustParseAddr(s)} }

func ipPort(s string, port uint16) Node { return Node{Addr: netip.MustParseAddr(s), Port: port} }

func obf(s string) Node { return Node{Obfuscated: s} }

var unknown = Node{}

func TestParseNode(t *testing.T) {
	tests := []struct {
		in       string
		bareIPv6 bool
		want     Node
		ok       bool
	}{
		{"192.0.2.60", false, ip("192.0.2.60"), true},
		{"192.0.2.60:4711", false, ipPort("192.0.2.60", 4711), true},
		{"[2001:db8:cafe::17]", false, ip("2001:db8:cafe::17"), true},
		{"[2001:db8:cafe::17]:4711", false, ipPort("2001:db8:cafe::17", 4711), true},
		{"[2001:db8::1]:_port", false, ip("2001:db8::1"), true}, // obfuscated port dropped
		{"[fe80::1%eth0]", false, ip("fe80::1"), true},          // zone dropped
		{"[::ffff:192.0.2.1]", false, ip("::ffff:192.0.2.1"), true},
		{"2001:db8::1", true, ip("2001:db8::1"), true},
		{"2001:db8::1", false, unknown, false}, // RFC 7239 wants brackets
		{"fe80::1%eth0", true, ip("fe80::1"), true},
		{"unknown", false, unknown, true},
		{"UNKNOWN", false, unknown, true},
		{"unknown:80", false, Node{Port: 80}, true},
		{"_gazonk", false, obf("_gazonk"), true},
		{"_SEVKISEK", false, obf("_SEVKISEK"), true},
		{"_hidden:_port", false, obf("_hidden"), true},
		{"_hidden:8080", false, Node{Obfuscated: "_hidden", Port: 8080}, true},
		// garbage never becomes an address
		{"", false, unknown, false},
		{"_", false, unknown, false},
		{"_a/b", false, unknown, false},
		{":80", false, unknown, false},
		{"192.0.2.60:", false, unknown, false},
		{"192.0.2.60:65536", false, unknown, false},
		{"192.0.2.60:123456", false, unknown, false},
		{"192.0.2.60:8o", false, unknown, false},
		{"192.0.2.256", false, unknown, false},
		{"01.2.3.4", false, unknown, false},
		{"[192.0.2.60]", false, unknown, false},
		{"[2001:db8::1", false, unknown, false},
		{"[2001:db8::1]x", false, unknown, false},
		{"[2001:db8::1]:", false, unknown, false},
		{"2001:db8::1:80:", true, unknown, false},
		{"localhost", false, unknown, false},
		{"example.com:80", false, unknown, false},
		{strings.Repeat("_a", 100), false, unknown, false},
	}
	for _, tt := range tests {
		got, ok := parseNode(tt.in, tt.bareIPv6)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseNode(%q, %v) = %+v, %v; want %+v, %v", tt.in, tt.bareIPv6, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseXForwardedFor(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []Node
	}{
		{"none", nil, nil},
		{"one", []string{"192.0.2.43"}, []Node{ip("192.0.2.43")}},
		// RFC 7239 section 7.4's X-Forwarded-For example
		{"rfc7239 7.4", []string{"192.0.2.43, 2001:db8:cafe::17"}, []Node{ip("192.0.2.43"), ip("2001:db8:cafe::17")}},
		{"lines are one list", []string{"192.0.2.1, 192.0.2.2", "192.0.2.3"},
			[]Node{ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")}},
		{"whitespace and empty entries", []string{" \t192.0.2.1 ,,\t192.0.2.2 , ", ""},
			[]Node{ip("192.0.2.1"), ip("192.0.2.2")}},
		{"ports", []string{"192.0.2.1:8080, [2001:db8::1]:4711, [2001:db8::2]"},
			[]Node{ipPort("192.0.2.1", 8080), ipPort("2001:db8::1", 4711), ip("2001:db8::2")}},
		{"garbage keeps its place as unknown", []string{"192.0.2.1, not-an-ip, 192.0.2.3, <script>"},
			[]Node{ip("192.0.2.1"), unknown, ip("192.0.2.3"), unknown}},
		{"unknown and obfuscated", []string{"unknown, _proxy1, 192.0.2.9"},
			[]Node{unknown, obf("_proxy1"), ip("192.0.2.9")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, truncated, err := ParseXForwardedFor(tt.values)
			if err != nil || truncated {
				t.Fatalf("err = %v, truncated = %v", err, truncated)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseXForwardedForLimits(t *testing.T) {
	// 200 hops: only the 64 right-most are read.
	var entries []string
	for i := range 200 {
		entries = append(entries, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String())
	}
	got, truncated, err := ParseXForwardedFor([]string{strings.Join(entries, ", ")})
	if err != nil || !truncated || len(got) != MaxHops {
		t.Fatalf("200 hops: len %d, truncated %v, err %v; want %d, true, nil", len(got), truncated, err, MaxHops)
	}
	if got[0] != ip("10.0.0.136") || got[MaxHops-1] != ip("10.0.0.199") {
		t.Errorf("kept %v .. %v, want the right-most 10.0.0.136 .. 10.0.0.199", got[0], got[MaxHops-1])
	}
	// exactly MaxHops is not truncated, trailing empties do not count
	got, truncated, _ = ParseXForwardedFor([]string{strings.Join(entries[:MaxHops], ",") + ", ,"})
	if truncated || len(got) != MaxHops {
		t.Errorf("%d hops: len %d, truncated %v", MaxHops, len(got), truncated)
	}
	// too long, across lines
	half := strings.Repeat("1", MaxHeaderBytes/2+1)
	if _, _, err := ParseXForwardedFor([]string{half, half}); !errors.Is(err, ErrHeaderTooLong) {
		t.Errorf("%d bytes: err = %v, want ErrHeaderTooLong", 2*len(half), err)
	}
}

func TestParseForwarded(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []Element
	}{
		// RFC 7239 section 4
		{"obfuscated", []string{`for="_gazonk"`}, []Element{{For: obf("_gazonk")}}},
		{"ipv6 with port, name case", []string{`For="[2001:db8:cafe::17]:4711"`},
			[]Element{{For: ipPort("2001:db8:cafe::17", 4711)}}},
		{"pairs", []string{`for=192.0.2.60;proto=http;by=203.0.113.43`},
			[]Element{{For: ip("192.0.2.60"), Proto: "http", By: ip("203.0.113.43")}}},
		{"two elements", []string{`for=192.0.2.43, for=198.51.100.17`},
			[]Element{{For: ip("192.0.2.43")}, {For: ip("198.51.100.17")}}},
		// section 6.3
		{"obfuscated chain", []string{`for=_hidden, for=_SEVKISEK`},
			[]Element{{For: obf("_hidden")}, {For: obf("_SEVKISEK")}}},
		// section 7.4
		{"from X-Forwarded-For", []string{`for=192.0.2.43, for="[2001:db8:cafe::17]"`},
			[]Element{{For: ip("192.0.2.43")}, {For: ip("2001:db8:cafe::17")}}},
		// section 7.5
		{"example usage", []string{`for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com`},
			[]Element{{For: ip("192.0.2.43")},
				{For: ip("198.51.100.17"), By: ip("203.0.113.60"), Proto: "http", Host: "example.com"}}},
		{"unknown", []string{`for=unknown;proto=https`}, []Element{{Proto: "https"}}},
		{"elements across lines", []string{`for=192.0.2.1`, `for=192.0.2.2, for="192.0.2.3:80"`},
			[]Element{{For: ip("192.0.2.1")}, {For: ip("192.0.2.2")}, {For: ipPort("192.0.2.3", 80)}}},
		{"case-insensitive names, scheme lowered", []string{`FOR=192.0.2.1;PROTO=HTTPS;Host="example.com:8443"`},
			[]Element{{For: ip("192.0.2.1"), Proto: "https", Host: "example.com:8443"}}},
		{"whitespace around separators", []string{" for=192.0.2.1 ; proto=https ,\tfor=192.0.2.2 "},
			[]Element{{For: ip("192.0.2.1"), Proto: "https"}, {For: ip("192.0.2.2")}}},
		{"empty elements and pairs", []string{`, ;for=192.0.2.1;;, ,`},
			[]Element{{For: ip("192.0.2.1")}}},
		{"quoted pair", []string{`for="\_gaz\onk";host="exa\mple.com"`},
			[]Element{{For: obf("_gazonk"), Host: "example.com"}}},
		{"extension parameter ignored", []string{`for=192.0.2.1;secret="a,b;c";x=y`},
			[]Element{{For: ip("192.0.2.1")}}},
		{"comma inside a quoted string does not split", []string{`for=192.0.2.1;ext="a, for=6.6.6.6", for=192.0.2.2`},
			[]Element{{For: ip("192.0.2.1")}, {For: ip("192.0.2.2")}}},
		// malformed elements keep their place as unknown hops
		{"pair without =", []string{`for=192.0.2.1, for, for=192.0.2.3`},
			[]Element{{For: ip("192.0.2.1")}, {}, {For: ip("192.0.2.3")}}},
		{"bare ipv6", []string{`for=2001:db8::1, for=192.0.2.3`},
			[]Element{{}, {For: ip("192.0.2.3")}}},
		{"unquoted ipv6 brackets", []string{`for=[2001:db8::1]`}, []Element{{}}},
		{"repeated parameter", []string{`for=192.0.2.1;for=6.6.6.6`}, []Element{{}}},
		{"bad scheme", []string{`for=192.0.2.1;proto="ht tp"`}, []Element{{}}},
		{"bad host", []string{`for=192.0.2.1;host="evil.com/path"`}, []Element{{}}},
		{"space around =", []string{`for = 192.0.2.1, for=192.0.2.2`}, []Element{{}, {For: ip("192.0.2.2")}}},
		{"junk after value", []string{`for=192.0.2.1 x, for=192.0.2.2`}, []Element{{}, {For: ip("192.0.2.2")}}},
		{"unterminated quote eats the line", []string{`for="192.0.2.1, for=192.0.2.2`, `for=192.0.2.3`},
			[]Element{{}, {For: ip("192.0.2.3")}}},
		{"control character in quotes", []string{"for=\"_a\x01b\", for=192.0.2.2"}, []Element{{}, {For: ip("192.0.2.2")}}},
		{"bad escape at end", []string{`for="_a\`}, []Element{{}}},
		{"no value", []string{`for=;proto=http`}, []Element{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, truncated, err := ParseForwarded(tt.values)
			if err != nil || truncated {
				t.Fatalf("err = %v, truncated = %v", err, truncated)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseForwardedLimits(t *testing.T) {
	var elems []string
	for i := range 150 {
		elems = append(elems, "for="+netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}).String())
	}
	got, truncated, err := ParseForwarded([]string{strings.Join(elems[:100], ","), strings.Join(elems[100:], ",")})
	if err != nil || !truncated || len(got) != MaxHops {
		t.Fatalf("150 elements: len %d, truncated %v, err %v", len(got), truncated, err)
	}
	for i, e := range got {
		if want := ip(netip.AddrFrom4([4]byte{10, 0, 0, byte(150 - MaxHops + i)}).String()); e.For != want {
			t.Fatalf("element %d = %v, want %v: the right-most %d, in order", i, e.For, want, MaxHops)
		}
	}
	if _, _, err := ParseForwarded([]string{strings.Repeat("a", MaxHeaderBytes+1)}); !errors.Is(err, ErrHeaderTooLong) {
		t.Errorf("err = %v, want ErrHeaderTooLong", err)
	}
}

func TestAppendForwardedQuotes(t *testing.T) {
	got := string(AppendForwarded(nil, []Element{
		{For: ip("192.0.2.43"), Proto: "https", Host: "example.com"},
		{For: ipPort("2001:db8:cafe::17", 4711), By: obf("_lb")},
		{For: ipPort("192.0.2.1", 80), Host: "example.com:8443"},
		{},
	}))
	want := `for=192.0.2.43;host=example.com;proto=https, for="[2001:db8:cafe::17]:4711";by=_lb, ` +
		`for="192.0.2.1:80";host="example.com:8443", for=unknown`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
