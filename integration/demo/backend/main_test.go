package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestExternalBaseURL(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		headers map[string]string
		want    string
	}{
		{"no forwarding", "127.0.0.1:9001", nil, "http://127.0.0.1:9001"},
		{"proto and host", "127.0.0.1:9001", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"}, "https://shop.example"},
		{"default port dropped", "b1", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example", "X-Forwarded-Port": "443"}, "https://shop.example"},
		{"odd port kept", "b1", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example", "X-Forwarded-Port": "8443"}, "https://shop.example:8443"},
		{"port header wins over host port", "b1", map[string]string{"X-Forwarded-Host": "shop.example:8080", "X-Forwarded-Port": "80"}, "http://shop.example"},
		{"first of a list", "b1", map[string]string{"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "a.example, b.example"}, "https://a.example"},
		{"ipv6 host", "[::1]:9001", nil, "http://[::1]:9001"},
		{"ipv6 default port", "b1", map[string]string{"X-Forwarded-Host": "[::1]:80"}, "http://[::1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/redirect", nil)
			r.Host = tt.host
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			if got := externalBaseURL(r); got != tt.want {
				t.Errorf("externalBaseURL = %q, want %q", got, tt.want)
			}
		})
	}
}

// serve runs one request against h with the given cookie header.
func serve(h http.Handler, path, cookie string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func whoamiOf(t *testing.T, h http.Handler, cookie string) whoamiResponse {
	t.Helper()
	w := serve(h, "/whoami", cookie)
	var resp whoamiResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatalf("/whoami: %v in %q", err, w.Body.String())
	}
	return resp
}

func TestSessionIsKnownOnlyToTheIssuingBackend(t *testing.T) {
	b1, b2 := newApp("b1").routes(), newApp("b2").routes()

	login := serve(b1, "/login", "")
	cookies := login.Result().Cookies()
	if len(cookies) != 2 || cookies[0].Name != "PHPSESSID" || cookies[1].Name != "laravel_session" {
		t.Fatalf("/login set %v; want PHPSESSID and laravel_session", login.Header().Values("Set-Cookie"))
	}
	if raw := login.Header().Values("Set-Cookie")[0]; !strings.HasSuffix(raw, "; path=/; HttpOnly") || len(cookies[0].Value) != 32 {
		t.Fatalf("PHPSESSID cookie %q; want PHP's format with 32 hex digits", raw)
	}
	session := "PHPSESSID=" + cookies[0].Value

	if who := whoamiOf(t, b1, session); !who.Known || who.Backend != "b1" || who.Session != cookies[0].Value {
		t.Fatalf("b1 /whoami = %+v; want its own session known", who)
	}
	if who := whoamiOf(t, b2, session); who.Known {
		t.Fatalf("b2 /whoami = %+v; want b1's session unknown", who)
	}

	logout := serve(b1, "/logout", session)
	if c := logout.Result().Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
		t.Fatalf("/logout set %v; want PHPSESSID expired", logout.Header().Values("Set-Cookie"))
	}
	if who := whoamiOf(t, b1, session); who.Known {
		t.Fatalf("b1 /whoami after logout = %+v; want the session forgotten", who)
	}
}

func TestEveryResponseNamesTheBackend(t *testing.T) {
	h := newApp("b7").routes()
	for _, path := range []string{"/", "/nope", "/health", "/status?code=503", "/status?code=x", "/redirect"} {
		if got := serve(h, path, "").Header().Get("X-Backend"); got != "b7" {
			t.Errorf("%s: X-Backend %q, want b7", path, got)
		}
	}
}

func TestHeadersEchoOmitsAbsentHeaders(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/headers", nil)
	r.Header.Add("X-Forwarded-For", "203.0.113.7")
	r.Header.Add("X-Forwarded-For", "10.0.0.1")
	w := httptest.NewRecorder()
	newApp("b1").routes().ServeHTTP(w, r)
	var got map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got["X-Forwarded-For"] != "203.0.113.7, 10.0.0.1" {
		t.Errorf("X-Forwarded-For = %q; want both lines joined", got["X-Forwarded-For"])
	}
	if _, ok := got["Forwarded"]; ok {
		t.Errorf("Forwarded present in %v; want it absent when not sent", got)
	}
	if got["Host"] == "" || got["RemoteAddr"] == "" {
		t.Errorf("Host or RemoteAddr missing in %v", got)
	}
}

func TestStatusAnswersTheAskedCode(t *testing.T) {
	h := newApp("b1").routes()
	if code := serve(h, "/status?code=503", "").Code; code != 503 {
		t.Errorf("/status?code=503 answered %d", code)
	}
	if code := serve(h, "/status?code=42", "").Code; code != http.StatusBadRequest {
		t.Errorf("/status?code=42 answered %d; want 400", code)
	}
}

// TestTLSInfo checks /tls over plain HTTP (no TLS to report) and over
// TLS, where a person looking through the load balancer sees the version.
func TestTLSInfo(t *testing.T) {
	w := serve(newApp("b1").routes(), "/tls", "")
	var got tlsInfoResponse
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.TLS || got.Backend != "b1" {
		t.Fatalf("/tls over plain HTTP: %+v, %v", got, err)
	}

	srv := httptest.NewTLSServer(newApp("b2").routes())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/tls")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got = tlsInfoResponse{}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || !got.TLS || !strings.HasPrefix(got.Version, "TLS 1.") {
		t.Fatalf("/tls over TLS: %+v, %v", got, err)
	}
}

// TestTLSOptionsNeedCertAndKey checks that -tls-listen without a
// certificate is refused at start rather than serving nothing.
func TestTLSOptionsNeedCertAndKey(t *testing.T) {
	if _, err := (tlsOptions{listen: "127.0.0.1:0"}).config(); err == nil {
		t.Fatal("a TLS listener without -tls-cert and -tls-key was accepted")
	}
}
