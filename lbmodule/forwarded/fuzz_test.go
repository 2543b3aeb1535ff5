package forwarded

import (
	"errors"
	"slices"
	"testing"
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
