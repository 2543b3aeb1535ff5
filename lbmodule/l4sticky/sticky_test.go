package l4sticky

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/sessionstore"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"
	"github.com/mholt/caddy-l4/modules/l4proxy"
	_ "github.com/mholt/caddy-l4/modules/l4proxy"
	"go.uber.org/zap"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct{ name, in, want, err string }{
		{"defaults", "sticky", `{}`, ""},
		{"everything", "sticky {\n store shared\n ttl 30m\n key sni_client_ip\n secret 0123456789abcdef-x\n namespace tls\n fallback round_robin\n}",
			`{"store":"shared","ttl":1800000000000,"key":"sni_client_ip","secrets":["0123456789abcdef-x"],"namespace":"tls","fallback":{"policy":"round_robin"}}`, ""},
		{"argument", "sticky client_ip", "", "wrong argument count"},
		{"unknown option", "sticky {\n stor shared\n}", "", `unrecognized layer4 sticky option "stor"`},
		{"bad ttl", "sticky {\n ttl soon\n}", "", `ttl: "soon" is not a positive duration`},
		{"two stores", "sticky {\n store a b\n}", "", "wrong argument count"},
		{"unknown fallback", "sticky {\n fallback nope\n}", "", "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Sticky
			err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(s)
			var a, b any
			_ = json.Unmarshal(got, &a)
			_ = json.Unmarshal([]byte(tc.want), &b)
			if ja, jb := mustJSON(a), mustJSON(b); ja != jb {
				t.Fatalf("got %s, want %s", ja, jb)
			}
		})
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestProvisionRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Sticky
		want string
	}{
		{"bad key", Sticky{Key: "cookie"}, "key must be client_ip or sni_client_ip"},
		{"short ttl", Sticky{TTL: caddy.Duration(1)}, "shorter than 1s"},
		{"short secret", Sticky{Secrets: []string{"short"}}, "at least 16 bytes"},
		{"undeclared store", Sticky{Store: "nope"}, `session store "nope" is not declared`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := tc.s.Provision(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Provision: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPassthroughUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct{ name, in, want, err string }{
		{"line", "passthrough {\n a.test b.test 10.0.0.1:443 10.0.0.2:443\n}",
			`{"hosts":[{"sni":["a.test","b.test"],"upstreams":["10.0.0.1:443","10.0.0.2:443"]}]}`, ""},
		{"block", "passthrough {\n *.a.test {\n to 10.0.0.1:443\n proxy_protocol off\n max_fails 3\n fail_duration 1m\n lb_policy round_robin\n }\n}",
			`{"hosts":[{"sni":["*.a.test"],"upstreams":["10.0.0.1:443"],"proxy_protocol":"off","selection":{"policy":"round_robin"},"fail_duration":60000000000,"max_fails":3}]}`, ""},
		{"no upstream", "passthrough {\n a.test\n}", "", "needs hostnames and upstreams"},
		{"no host", "passthrough {\n 10.0.0.1:443\n}", "", "a line starts with hostnames"},
		{"upstream without port", "passthrough {\n a.test 10.0.0.1:443 backend2\n}", "", `upstream "backend2" needs a port`},
		{"hostname with port", "passthrough {\n a.test:443 10.0.0.1:443\n}", "", "a line starts with hostnames"},
		{"ipv6 upstream", "passthrough {\n a.test [::1]:443\n}", `{"hosts":[{"sni":["a.test"],"upstreams":["[::1]:443"]}]}`, ""},
		{"unknown option", "passthrough {\n a.test {\n too 10.0.0.1:443\n }\n}", "", `unrecognized passthrough option "too"`},
		{"bad max_fails", "passthrough {\n a.test {\n to 10.0.0.1:443\n max_fails none\n }\n}", "", "max_fails: want a positive count"},
		{"argument", "passthrough a.test", "", "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Passthrough
			err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(p)
			var a, b any
			_ = json.Unmarshal(got, &a)
			_ = json.Unmarshal([]byte(tc.want), &b)
			if mustJSON(a) != mustJSON(b) {
				t.Fatalf("got %s, want %s", mustJSON(a), mustJSON(b))
			}
		})
	}
}

func TestPassthroughProvisionRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Passthrough
		want string
	}{
		{"empty", Passthrough{}, "no hostnames"},
		{"bad upstream", Passthrough{Hosts: []PassHost{{SNI: []string{"a.test"}, Upstreams: []string{"10.0.0.1"}}}}, "want host:port"},
		{"bad proxy protocol", Passthrough{Hosts: []PassHost{{SNI: []string{"a.test"}, Upstreams: []string{"10.0.0.1:443"}, ProxyProtocol: "v3"}}}, "v1, v2 or off"},
		{"hostname twice", Passthrough{Hosts: []PassHost{{SNI: []string{"a.test"}, Upstreams: []string{"10.0.0.1:443"}}, {SNI: []string{"A.test"}, Upstreams: []string{"10.0.0.2:443"}}}}, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			if err := tc.p.Provision(ctx); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Provision: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestWithNamespace(t *testing.T) {
	for in, want := range map[string]string{
		"":                                    `{"namespace":"l4:a.test","policy":"sticky"}`,
		`{"policy":"sticky","store":"s"}`:     `{"namespace":"l4:a.test","policy":"sticky","store":"s"}`,
		`{"policy":"sticky","namespace":"x"}`: `{"namespace":"x","policy":"sticky"}`,
		`{"policy":"round_robin"}`:            `{"policy":"round_robin"}`,
	} {
		var raw json.RawMessage
		if in != "" {
			raw = json.RawMessage(in)
		}
		got, err := withNamespace(raw, "l4:a.test")
		if err != nil || string(got) != want {
			t.Errorf("withNamespace(%s) = %s %v, want %s", in, got, err, want)
		}
	}
}

// TestOneKeyPerProcess: without a secret, the key of a memory-store
// policy is the same after a reload (a new Provision), so the bindings
// the store keeps are found again.
func TestOneKeyPerProcess(t *testing.T) {
	keys := make([]string, 2)
	for i := range keys {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		s := &Sticky{}
		if err := s.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		keys[i] = s.keyOf("", "192.0.2.1")
		_ = s.Cleanup()
		cancel()
	}
	if keys[0] != keys[1] {
		t.Fatal("a reload changed the store key of a client")
	}
}

// TestTwoPoliciesOneNamespaceRefused: two policies of one config on one
// store and namespace would move each other's clients.
func TestTwoPoliciesOneNamespaceRefused(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	a, b := &Sticky{}, &Sticky{}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Provision(ctx); err == nil || !strings.Contains(err.Error(), "give each its own `namespace`") {
		t.Fatalf("second policy on the same store and namespace: %v", err)
	}
	c := &Sticky{Namespace: "other"}
	if err := c.Provision(ctx); err != nil {
		t.Fatalf("a policy with its own namespace: %v", err)
	}
}

// downBackend is a network store that cannot be reached.
type downBackend struct{ sessionstore.Backend }

var errDown = errors.New("store down")

func (downBackend) CallTimeout() time.Duration { return 50 * time.Millisecond }
func (downBackend) Get(context.Context, string) (sessionstore.Binding, error) {
	return sessionstore.Binding{}, errDown
}
func (downBackend) Draining(context.Context) (map[string]bool, error) { return nil, errDown }

// TestStoreDownHashes: with the store unreachable, one client gets one
// backend every time, the same on every node (rendezvous hashing of its
// key), not whatever the fallback picks per connection.
func TestStoreDownHashes(t *testing.T) {
	pool := l4proxy.UpstreamPool{{Dial: []string{"10.0.0.1:443"}}, {Dial: []string{"10.0.0.2:443"}}, {Dial: []string{"10.0.0.3:443"}}}
	node := func() *Sticky {
		return &Sticky{Key: keyClientIP, Namespace: "l4:client_ip", ttl: time.Hour, secret: []byte("0123456789abcdef0123"),
			fallback: &l4proxy.RoundRobinSelection{}, store: sessionstore.NewStore("down", downBackend{}, nil)}
	}
	conn := func(ip string) *layer4.Connection {
		c1, c2 := net.Pipe()
		t.Cleanup(func() { c1.Close(); c2.Close() })
		return layer4.WrapConnection(addrConn{c1, &net.TCPAddr{IP: net.ParseIP(ip), Port: 5000}}, nil, zap.NewNop())
	}
	a, b := node(), node()
	spread := map[string]bool{}
	for i := range 20 {
		ip := fmt.Sprintf("192.0.2.%d", i+1)
		first := a.Select(pool, conn(ip))
		for range 5 {
			if got := a.Select(pool, conn(ip)); got != first {
				t.Fatalf("client %s: %v then %v with the store down", ip, first, got)
			}
			if got := b.Select(pool, conn(ip)); got != first {
				t.Fatalf("client %s: node a picks %v, node b %v", ip, first, got)
			}
		}
		spread[first.String()] = true
	}
	if len(spread) < 2 {
		t.Fatalf("20 clients all hashed to %v", spread)
	}
}

// addrConn is a net.Conn with a given remote address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }
