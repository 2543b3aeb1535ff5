package forwarded

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name, input string
		want        string // JSON of the handler
	}{
		{"edge", `forwarded`, `{}`},
		{"everything", `forwarded {
			trusted_proxies 10.0.0.0/8 192.0.2.1
			trusted_proxies 2001:db8::/32
			trusted_proxies static 198.51.100.0/24
			trusted_hops 1
			trusted_unix
			accept x_forwarded forwarded
			emit forwarded
		}`, `{"trusted_proxies":[{"ranges":["10.0.0.0/8","192.0.2.1","2001:db8::/32"],"source":"static"},` +
			`{"ranges":["198.51.100.0/24"],"source":"static"}],` +
			`"trusted_hops":1,"trusted_unix":true,"accept":["x_forwarded","forwarded"],"emit":["forwarded"]}`},
		{"private_ranges", `forwarded {
			trusted_proxies private_ranges
		}`, `{"trusted_proxies":[{"ranges":` + mustJSON(caddyhttp.PrivateRangesCIDR()) + `,"source":"static"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(h)
			var gotV, wantV any
			_ = json.Unmarshal(got, &gotV)
			if err := json.Unmarshal([]byte(tt.want), &wantV); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotV, wantV) {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	tests := []struct{ input, want string }{
		{`forwarded 10.0.0.0/8`, "in a block"},
		{"forwarded {\n trusted_proxies\n}", "wrong argument count"},
		{"forwarded {\n trusted_proxies 10.0.0.0/33\n}", "parsing CIDR"},
		{"forwarded {\n trusted_proxies 10.0.0.0/8 cloudflare\n}", "own trusted_proxies line"},
		{"forwarded {\n trusted_proxies no_such_source\n}", "http.ip_sources.no_such_source"},
		{"forwarded {\n trusted_hops many\n}", "not a number"},
		{"forwarded {\n trusted_hops 65\n}", "not a number from 0 to 64"},
		{"forwarded {\n trusted_hops 1 2\n}", "wrong argument count"},
		{"forwarded {\n trusted_unix yes\n}", "wrong argument count"},
		{"forwarded {\n accept\n}", "wrong argument count"},
		{"forwarded {\n emit x-forwarded\n}", `unknown format "x-forwarded"`},
		{"forwarded {\n trust 10.0.0.1\n}", `unrecognized forwarded option "trust"`},
	}
	for _, tt := range tests {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want it to mention %q", tt.input, err, tt.want)
		}
	}
}
