package forwarded

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// BenchmarkServeHTTP measures the handler on typical requests. Each
// iteration also pays for a fresh replacer and request context, as Caddy's
// server does per request; the baseline case measures that harness with a
// handler that does nothing, so the handler's own cost is the difference.
func BenchmarkServeHTTP(b *testing.B) {
	browser := []string{
		"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
		"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
		"Accept-Encoding", "gzip, deflate, br",
		"Accept-Language", "en-US,en;q=0.9",
		"Cookie", "session=0123456789abcdef; lb_affinity=abcdef",
		"Connection", "keep-alive",
	}
	trusted := trusting("10.0.0.0/8")
	cases := []struct {
		name    string
		h       *Handler
		peer    string
		headers []string
	}{
		{"baseline", nil, "192.0.2.1:51000", browser},
		{"edge_untrusted", &Handler{TrustedProxiesRaw: trusted}, "192.0.2.1:51000", browser},
		{"edge_untrusted_emit_both", &Handler{TrustedProxiesRaw: trusted, Emit: []string{"x_forwarded", "forwarded"}},
			"192.0.2.1:51000", browser},
		{"trusted_3_hops", &Handler{TrustedProxiesRaw: trusted}, "10.0.0.1:51000", append([]string{
			"X-Forwarded-For", "198.51.100.9, 10.0.0.3, 10.0.0.2",
			"X-Forwarded-Proto", "https",
			"X-Forwarded-Host", "app.example",
		}, browser...)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var serve func(http.ResponseWriter, *http.Request, caddyhttp.Handler) error
			if c.h == nil {
				serve = func(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
					return next.ServeHTTP(w, r)
				}
			} else {
				serve = provision(b, c.h).ServeHTTP
			}
			tmpl := request(c.peer, c.headers...)
			input := tmpl.Header.Clone()
			r := caddyhttp.PrepareRequest(tmpl, caddy.NewReplacer(), nil, nil)
			vars := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
			base := r.Context()
			w := httptest.NewRecorder()
			httpVars := func(string) (any, bool) { return nil, false }
			next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for k := range r.Header {
					delete(r.Header, k)
				}
				for k, v := range input {
					r.Header[k] = v
				}
				vars[caddyhttp.ClientIPVarKey] = "192.0.2.1"
				vars[caddyhttp.TrustedProxyVarKey] = false
				delete(vars, doneVarKey) // each iteration is a new request
				repl := caddy.NewReplacer()
				repl.Map(httpVars) // as Caddy's server does, growing the provider list
				rr := r.WithContext(context.WithValue(base, caddy.ReplacerCtxKey, repl))
				if err := serve(w, rr, next); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
