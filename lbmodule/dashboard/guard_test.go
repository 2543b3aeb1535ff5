package dashboard

import (
	"context"
	"crypto/tls"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		name    string
		host    string
		tls     bool
		origin  []string
		fetch   string
		wantErr string
	}{
		{"same", "lb.example:8443", true, []string{"https://lb.example:8443"}, "same-origin", ""},
		{"same, no fetch metadata", "lb.example", false, []string{"http://lb.example"}, "", ""},
		{"host case", "LB.example", false, []string{"http://lb.EXAMPLE"}, "", ""},
		{"other host", "lb.example", false, []string{"http://evil.example"}, "", "not this site"},
		{"suffix host", "lb.example", false, []string{"http://lb.example.evil"}, "", "not this site"},
		{"port dropped", "lb.example:8080", false, []string{"http://lb.example"}, "", "not this site"},
		{"scheme downgrade", "lb.example", true, []string{"http://lb.example"}, "", "not this site"},
		{"two origins", "lb.example", false, []string{"http://lb.example", "http://lb.example"}, "", "missing"},
		{"empty", "lb.example", false, []string{""}, "", "missing"},
		{"null", "lb.example", false, []string{"null"}, "", "missing"},
		{"userinfo", "lb.example", false, []string{"http://u@lb.example"}, "", "not a web origin"},
		{"path", "lb.example", false, []string{"http://lb.example/"}, "", "not a web origin"},
		{"other scheme", "lb.example", false, []string{"ftp://lb.example"}, "", "not a web origin"},
		{"garbage", "lb.example", false, []string{"%zz"}, "", "not a web origin"},
		{"cross-site fetch", "lb.example", false, []string{"http://lb.example"}, "cross-site", "Sec-Fetch-Site"},
		{"none fetch", "lb.example", false, []string{"http://lb.example"}, "none", "Sec-Fetch-Site"},
		// Behind a CDN that terminates TLS, trusted by `forwarded`: the
		// page was loaded from the client-facing origin.
		{"forwarded https origin", "10.0.0.5:8900", false, []string{"https://status.example"}, "same-origin", ""},
		{"forwarded, direct origin too", "10.0.0.5:8900", false, []string{"http://10.0.0.5:8900"}, "", ""},
		{"forwarded, other host", "10.0.0.5:8900", false, []string{"https://evil.example"}, "", "not this site"},
		{"forwarded, wrong scheme", "10.0.0.5:8900", false, []string{"http://status.example"}, "", "not this site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/action", nil)
			r.Host = tc.host
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for _, o := range tc.origin {
				r.Header.Add("Origin", o)
			}
			if tc.fetch != "" {
				r.Header.Set("Sec-Fetch-Site", tc.fetch)
			}
			if strings.HasPrefix(tc.name, "forwarded") {
				repl := caddy.NewReplacer()
				repl.Set("http.forwarded.proto", "https")
				repl.Set("http.forwarded.host", "status.example")
				repl.Set("http.forwarded.port", "443")
				r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
			}
			err := sameOrigin(r)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("sameOrigin: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestCheckToken(t *testing.T) {
	now := time.Now()
	good := newToken(now)
	exp, mac, _ := strings.Cut(good, ".")
	for _, tc := range []struct {
		tok, wantErr string
	}{
		{good, ""},
		{"", "missing"},
		{"nodot", "not a token"},
		{exp + "." + mac[:len(mac)-1], "not a token"},
		{exp + "1." + mac, "not a token"}, // expiry moved: the MAC no longer fits
		{newToken(now.Add(-tokenLifetime - time.Minute)), "expired"},
		{"x." + tokenMAC("x"), "expired"}, // signed, but not a time
		{good + ".", "not a token"},
	} {
		err := checkToken(tc.tok, now)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("checkToken(%q): %v, want %q", tc.tok, err, tc.wantErr)
		}
	}
}

// FuzzAction throws arbitrary action requests at the handler: it answers
// every one with an error status and a message (no config runs, so no
// action can succeed), and never panics.
func FuzzAction(f *testing.F) {
	f.Add("http://example.com", "", "application/json", `{"action":"drain","address":"a:1"}`)
	f.Add("http://example.com", "1.x", "application/json; charset=utf-8", `{"action":"forget_session","key":"k"}`)
	f.Add("null", "", "text/plain", `{`)
	f.Add("http://example.com", "VALID", "application/json", `{"action":"undrain","address":""}`)
	f.Add("http://example.com", "VALID", "application/json", `{"action":"drain","address":"a:1"}{}`)
	d := &Dashboard{Actions: true, logger: zap.NewNop(), cache: new(viewCache), guard: new(hostGuard), hosts: []string{"example.com"}}
	f.Fuzz(func(t *testing.T, origin, token, ctype, body string) {
		if token == "VALID" {
			token = newToken(time.Now())
		}
		r := httptest.NewRequest(http.MethodPost, "http://example.com/lb-status/action", strings.NewReader(body))
		r.Header["Origin"] = []string{origin}
		r.Header["Content-Type"] = []string{ctype}
		r.Header[tokenHeader] = []string{token}
		w := httptest.NewRecorder()
		if err := d.ServeHTTP(w, r, nil); err != nil {
			t.Fatalf("error escaped the handler: %v", err)
		}
		if w.Code < 400 || w.Code > 599 {
			t.Fatalf("status %d for %q %q %q %q", w.Code, origin, token, ctype, body)
		}
		if !strings.Contains(w.Body.String(), `"error"`) {
			t.Fatalf("no error message: %s", w.Body.String())
		}
	})
}

func TestRateJSON(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {0.34400000000000003, "0.344"}, {88.10000000000001, "88.1"}, {4.405235927918867, "4.41"},
		{11561.7, "11562"}, {0.0004, "0"}, {0.0016, "0.002"}, {1, "1"}, {-2.5, "-2.5"}, {100, "100"},
		{math.NaN(), "0"}, {math.Inf(1), "0"}, {-0.0001, "0"},
	} {
		got, err := Rate(tc.v).MarshalJSON()
		if err != nil || string(got) != tc.want {
			t.Errorf("Rate(%v) = %s (%v), want %s", tc.v, got, err, tc.want)
		}
	}
}
