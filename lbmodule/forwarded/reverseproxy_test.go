package forwarded

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// TestThroughReverseProxy runs real Caddy servers in process, each with
// the forwarded handler in front of reverse_proxy, and checks what the
// backend finally receives after reverse_proxy's own X-Forwarded-*
// rewriting (emit.go): exactly the chain the handler computed.
func TestThroughReverseProxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	defer backend.Close()

	servers := map[string]string{
		// the client (127.0.0.1) is not trusted
		"edge": `{"handler": "forwarded", "trusted_proxies": [{"source": "static", "ranges": ["10.0.0.0/8"]}],
			"emit": ["x_forwarded", "forwarded"]}`,
		// the client is a trusted proxy
		"behind": `{"handler": "forwarded", "trusted_proxies": [{"source": "static", "ranges": ["127.0.0.0/8", "10.0.0.0/8"]}],
			"emit": ["x_forwarded", "forwarded"]}`,
		"forwarded_only": `{"handler": "forwarded", "emit": ["forwarded"]}`,
	}
	addrs := map[string]string{}
	var serverJSON []string
	for name, handler := range servers {
		addrs[name] = freeAddr(t)
		serverJSON = append(serverJSON, fmt.Sprintf(`%q: {
			"listen": [%q],
			"automatic_https": {"disable": true},
			"routes": [{"handle": [%s, {
				"handler": "reverse_proxy",
				"upstreams": [{"dial": %q}],
				"headers": {"request": {"set": {
					"X-Seen-Client-Ip": ["{http.vars.client_ip}"],
					"X-Seen-Placeholders": ["{http.forwarded.client_ip} {http.forwarded.proto} {http.forwarded.host} {http.forwarded.port}"]
				}}}
			}]}]
		}`, name, addrs[name], handler, backend.Listener.Addr().String()))
	}
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"apps": {"http": {"servers": {%s, %s, %s}}}
	}`, serverJSON[0], serverJSON[1], serverJSON[2])
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatalf("loading the config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	get := func(t *testing.T, server string, headers ...string) http.Header {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addrs[server]+"/", nil)
		req.Host = "app.example:8080"
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header[headers[i]] = append(req.Header[headers[i]], headers[i+1]) // spelled as given
		}
		res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var got http.Header
		if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
			t.Fatalf("status %d: %v", res.StatusCode, err)
		}
		return got
	}
	forwardingOnly := func(h http.Header) http.Header {
		out := http.Header{}
		for k, v := range h {
			if classifyHeader(k) != notForwarding || k == "X-Seen-Client-Ip" || k == "X-Seen-Placeholders" {
				out[k] = v
			}
		}
		return out
	}

	t.Run("spoofed headers from an untrusted client", func(t *testing.T) {
		headers := append([]string{"Connection", "X-Forwarded-Port, X-Forwarded-For"}, spoofed...)
		got := forwardingOnly(get(t, "edge", headers...))
		want := http.Header{
			"X-Forwarded-For":   {"127.0.0.1"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"app.example:8080"},
			// the port the client connected to, not the Host header's say
			"X-Forwarded-Port":    {listenerPort(addrs["edge"])},
			"Forwarded":           {`for=127.0.0.1;host="app.example:8080";proto=http`},
			"X-Seen-Client-Ip":    {"127.0.0.1"},
			"X-Seen-Placeholders": {"127.0.0.1 http app.example:8080 " + listenerPort(addrs["edge"])},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("backend received\n%v\nwant\n%v", got, want)
		}
	})

	t.Run("chain from a trusted proxy", func(t *testing.T) {
		got := forwardingOnly(get(t, "behind",
			"X-Forwarded-For", "203.0.113.7, 198.51.100.9", // 203.0.113.7 is the client's own claim
			"X-Forwarded-For", "10.0.0.2",
			"X-Forwarded-Proto", "https",
			"X-Forwarded-Host", "app.example",
			"X-Real-Ip", "203.0.113.7",
			"Connection", "X-Forwarded-For"))
		want := http.Header{
			"X-Forwarded-For":     {"198.51.100.9, 10.0.0.2, 127.0.0.1"},
			"X-Forwarded-Proto":   {"https"},
			"X-Forwarded-Host":    {"app.example"},
			"X-Forwarded-Port":    {"443"},
			"Forwarded":           {"for=198.51.100.9;host=app.example;proto=https, for=10.0.0.2, for=127.0.0.1"},
			"X-Seen-Client-Ip":    {"198.51.100.9"},
			"X-Seen-Placeholders": {"198.51.100.9 https app.example 443"},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("backend received\n%v\nwant\n%v", got, want)
		}
	})

	t.Run("forwarded only", func(t *testing.T) {
		got := forwardingOnly(get(t, "forwarded_only", "X-Forwarded-For", "6.6.6.6"))
		want := http.Header{
			"Forwarded":           {`for=127.0.0.1;host="app.example:8080";proto=http`},
			"X-Seen-Client-Ip":    {"127.0.0.1"},
			"X-Seen-Placeholders": {"127.0.0.1 http app.example:8080 " + listenerPort(addrs["forwarded_only"])},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("backend received\n%v\nwant\n%v", got, want)
		}
	})
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func listenerPort(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
