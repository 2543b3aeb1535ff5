package l4sticky

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/mholt/caddy-l4/modules/l4proxy"
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
		{"no host", "passthrough {\n 10.0.0.1:443\n}", "", "needs hostnames and upstreams"},
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
