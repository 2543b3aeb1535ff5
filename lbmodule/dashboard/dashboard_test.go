package dashboard

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/caddylb/caddylb/internal/testproc"
	_ "github.com/caddylb/caddylb/lbmodule/affinity"
	_ "github.com/caddylb/caddylb/sessionstore"
)

// site is a running config: a sticky reverse_proxy on a memory store in
// front of a live backend and an address nothing listens on, and the
// dashboard under /lb-status/.
type site struct {
	base   string // http://host:port
	live   string // the live backend's address
	dead   string
	client *http.Client
}

func runSite(t *testing.T, actions bool) *site {
	t.Helper()
	return runSiteWith(t, actions, `{"policy": "sticky", "secrets": ["0123456789abcdef0123456789abcdef"], "store": "mem"}`)
}

// runSiteWith is runSite with the given selection policy JSON.
func runSiteWith(t *testing.T, actions bool, policy string) *site {
	t.Helper()
	return runSiteOn(t, actions, policy, `{"backend": "memory"}`)
}

// runSiteOn is runSiteWith with the store "mem" declared as store.
func runSiteOn(t *testing.T, actions bool, policy, store string) *site {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	s := &site{live: strings.TrimPrefix(backend.URL, "http://"), dead: testproc.FreeAddr(t)}
	listen := testproc.FreeAddr(t)
	s.base = "http://" + listen
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"apps": {
			"session_store": {"stores": {"mem": %s}},
			"http": {"servers": {"srv": {
				"listen": [%q],
				"automatic_https": {"disable": true},
				"named_routes": {"dash": {"handle": [{"handler": "lb_dashboard"}]}},
				"errors": {"routes": [{"match": [{"host": ["status.example"]}], "handle": [{"handler": "lb_dashboard"}]}]},
				"routes": [
					{"match": [{"host": ["status.example"], "path": ["/inv/*"]}], "handle": [{"handler": "invoke", "name": "dash"}], "terminal": true},
					{"match": [{"host": ["status.example"], "path": ["/boom/*"]}], "handle": [{"handler": "error", "status_code": 500}], "terminal": true},
					{"match": [{"path": ["/lb-status/*"]}], "handle": [{"handler": "lb_dashboard", "actions": %v}], "terminal": true},
					{"match": [{"host": ["status.example"], "path": ["/named/*"]}], "handle": [{"handler": "subroute", "routes": [{"handle": [{"handler": "lb_dashboard"}]}]}], "terminal": true},
					{"match": [{"path": ["/listed/*"]}], "handle": [{"handler": "lb_dashboard", "hosts": ["Listed.Example"]}], "terminal": true},
					{"handle": [{
						"handler": "reverse_proxy",
						"upstreams": [{"dial": %q}, {"dial": %q}],
						"load_balancing": {"retries": 1, "selection_policy": %s}
					}]}
				]
			}}}
		}
	}`, store, listen, actions, s.live, s.dead, policy)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	jar, _ := cookiejar.New(nil)
	s.client = &http.Client{Jar: jar, Timeout: 10 * time.Second}
	return s
}

func (s *site) data(t *testing.T) View {
	t.Helper()
	res, err := s.client.Get(s.base + "/lb-status/data")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("data: %s, Content-Type %q", res.Status, res.Header.Get("Content-Type"))
	}
	var v View
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func (s *site) row(t *testing.T, v View, addr string) UpstreamRow {
	t.Helper()
	for _, u := range v.Upstreams {
		if u.Address == addr {
			return u
		}
	}
	t.Fatalf("no row for %s in %+v", addr, v.Upstreams)
	return UpstreamRow{}
}

// post sends an action the way a browser page would, with hdr's changes:
// an empty value removes the header.
func (s *site) post(t *testing.T, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.base+"/lb-status/action", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", s.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set(tokenHeader, newToken(time.Now()))
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return res.StatusCode, e.Error
	}
	return res.StatusCode, string(b)
}

func TestDataCountsRequestsAndErrors(t *testing.T) {
	s := runSite(t, false)
	// A browser with its cookie jar: one session, bound to the live
	// backend after the dead one fails once (if it was picked first).
	for i := 0; i < 20; i++ {
		res, err := s.client.Get(s.base + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	for i := 0; i < 5; i++ {
		res, err := s.client.Get(s.base + "/fail")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	var v View
	deadline := time.Now().Add(5 * time.Second)
	for {
		v = s.data(t)
		live := s.row(t, v, s.live)
		if live.RequestsPerSec != nil && *live.RequestsPerSec > 0 && live.ErrorRate != nil && *live.ErrorRate > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live upstream's requests and errors were not counted: %+v", live)
		}
		time.Sleep(300 * time.Millisecond)
	}
	live := s.row(t, v, s.live)
	// 25 requests reached it, 5 answered 500: a fifth, give or take the
	// first request's try of the dead upstream.
	if r := *live.ErrorRate; r < 0.15 || r > 0.25 {
		t.Errorf("live upstream's error rate %.3f, want about 5/25", r)
	}
	if len(live.RequestSeries) != historyLen-1 {
		t.Errorf("series of %d points, want %d", len(live.RequestSeries), historyLen-1)
	}
	if live.Kind != "http" || live.Store != "mem" || !live.Healthy {
		t.Errorf("live row %+v", live)
	}
	if v.Actions || v.Token != "" {
		t.Errorf("read-only dashboard answered actions=%v token=%q", v.Actions, v.Token)
	}
	if len(v.Policies) != 1 || v.Policies[0].Outcomes["new"] < 1 || v.Policies[0].Outcomes["hit"] < 1 {
		t.Errorf("policies %+v: want one with new and hit counted", v.Policies)
	}
	if len(v.Stores) != 1 || v.Stores[0].Name != "mem" || !v.Stores[0].Reachable || v.Stores[0].Backend != "memory" {
		t.Errorf("stores %+v", v.Stores)
	}
	if len(v.Fleet.Nodes) != 1 || v.Node.ID == "" || v.Fleet.Nodes[0].ID != v.Node.ID {
		t.Errorf("fleet %+v, node %+v: want this node alone", v.Fleet, v.Node)
	}
}

func TestReadOnlyRefusesActions(t *testing.T) {
	s := runSite(t, false)
	status, body := s.post(t, fmt.Sprintf(`{"action":"drain","address":%q}`, s.live), nil)
	if status != http.StatusForbidden || !strings.Contains(body, "read-only") {
		t.Fatalf("drain on a read-only dashboard: %d %s", status, body)
	}
	if s.row(t, s.data(t), s.live).Draining {
		t.Fatal("the refused drain was applied")
	}
	res, err := s.client.Get(s.base + "/lb-status/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("page: %s", res.Status)
	}
}

func TestActionGuards(t *testing.T) {
	s := runSite(t, true)
	drain := fmt.Sprintf(`{"action":"drain","address":%q}`, s.live)
	for _, tc := range []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		want   string
	}{
		{"cross-origin", drain, map[string]string{"Origin": "https://evil.example"}, 403, "not this site"},
		{"origin of another port", drain, map[string]string{"Origin": "http://127.0.0.1:1"}, 403, "not this site"},
		{"origin with other scheme", drain, map[string]string{"Origin": strings.Replace(s.base, "http:", "https:", 1)}, 403, "not this site"},
		{"no origin", drain, map[string]string{"Origin": ""}, 403, "Origin header is missing"},
		{"null origin", drain, map[string]string{"Origin": "null"}, 403, "Origin header is missing"},
		{"origin with a path", drain, map[string]string{"Origin": s.base + "/x"}, 403, "not a web origin"},
		{"cross-site fetch", drain, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "Sec-Fetch-Site"},
		{"same-site fetch", drain, map[string]string{"Sec-Fetch-Site": "same-site"}, 403, "Sec-Fetch-Site"},
		{"no token", drain, map[string]string{tokenHeader: ""}, 403, "missing X-LB-Dashboard-Token"},
		{"forged token", drain, map[string]string{tokenHeader: "9999999999.AAAA"}, 403, "not a token of this node"},
		{"expired token", drain, map[string]string{tokenHeader: newToken(time.Now().Add(-13 * time.Hour))}, 403, "expired"},
		{"form body", "address=x", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"},
		{"text body", drain, map[string]string{"Content-Type": "text/plain"}, 415, "application/json"},
		{"bad json", `{"action":`, nil, 400, "decoding the action"},
		{"two values", drain + drain, nil, 400, "more than one"},
		{"unknown field", `{"action":"drain","address":"x","upstream":"y"}`, nil, 400, "unknown field"},
		{"unknown action", `{"action":"reboot"}`, nil, 400, "unknown action"},
		{"no action", `{}`, nil, 400, "missing \"action\""},
		{"drain without address", `{"action":"drain"}`, nil, 400, "missing \"address\""},
		{"drain with key", fmt.Sprintf(`{"action":"drain","address":%q,"key":"k"}`, s.live), nil, 400, "does not go with"},
		{"unknown upstream", `{"action":"drain","address":"10.9.9.9:80"}`, nil, 404, "no upstream of a sticky policy"},
		{"unknown session", `{"action":"forget_session","key":"nobody"}`, nil, 404, "no binding"},
		{"huge body", `{"action":"drain","address":"` + strings.Repeat("a", maxActionBody) + `"}`, nil, 413, "over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.post(t, tc.body, tc.hdr)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Errorf("%d %s, want %d with %q", status, body, tc.status, tc.want)
			}
		})
	}
	if s.row(t, s.data(t), s.live).Draining {
		t.Fatal("a refused request drained the upstream")
	}

	// What the page does: it reads the token from the data.
	v := s.data(t)
	if !v.Actions || v.Token == "" {
		t.Fatalf("actions=%v token=%q", v.Actions, v.Token)
	}
	status, body := s.post(t, drain, map[string]string{tokenHeader: v.Token})
	if status != http.StatusOK || !strings.Contains(body, `"draining":true`) {
		t.Fatalf("drain: %d %s", status, body)
	}
	if !s.row(t, s.data(t), s.live).Draining {
		t.Fatal("the drain is not shown at once")
	}
	status, body = s.post(t, fmt.Sprintf(`{"action":"undrain","address":%q}`, s.live), map[string]string{tokenHeader: v.Token})
	if status != http.StatusOK || s.row(t, s.data(t), s.live).Draining {
		t.Fatalf("undrain: %d %s", status, body)
	}
}

func TestForgetSession(t *testing.T) {
	s := runSiteWith(t, true, `{"policy": "sticky", "header": "X-Session", "store": "mem"}`)
	get := func() {
		req, _ := http.NewRequest(http.MethodGet, s.base+"/", nil)
		req.Header.Set("X-Session", "user-42")
		res, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	get()
	if n := s.row(t, s.data(t), s.live).BoundSessions + s.row(t, s.data(t), s.dead).BoundSessions; n != 1 {
		t.Fatalf("%d bound sessions after one, want 1", n)
	}
	// Bound to either upstream: one that failed a request but that no
	// health check marks down keeps its sessions (see Sticky.rebind).
	status, body := s.post(t, `{"action":"forget_session","key":"user-42"}`, nil)
	if status != http.StatusOK || !strings.Contains(body, `"deleted":[{`) || !strings.Contains(body, `"key_mode":"header"`) {
		t.Fatalf("forget: %d %s", status, body)
	}
	if n := s.row(t, s.data(t), s.live).BoundSessions + s.row(t, s.data(t), s.dead).BoundSessions; n != 0 {
		t.Fatalf("%d bound sessions after forgetting the only one", n)
	}
	status, body = s.post(t, `{"action":"forget_session","key":"user-42"}`, nil)
	if status != http.StatusNotFound || !strings.Contains(body, "no binding") {
		t.Fatalf("forgetting it again: %d %s, want 404", status, body)
	}
}

func TestMethodsAndPage(t *testing.T) {
	s := runSite(t, true)
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{http.MethodPut, "/lb-status/data", 405, "GET, HEAD"},
		{http.MethodPost, "/lb-status/data", 405, "GET, HEAD"},
		{http.MethodGet, "/lb-status/action", 405, "POST"},
		{http.MethodDelete, "/lb-status/", 405, "GET, HEAD"},
		{"PATCH", "/lb-status/anything", 405, "GET, HEAD"},
		{http.MethodHead, "/lb-status/data", 200, ""},
		{http.MethodHead, "/lb-status/", 200, ""},
	} {
		req, _ := http.NewRequest(tc.method, s.base+tc.path, nil)
		res, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.status || res.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want %d Allow %q", tc.method, tc.path, res.StatusCode, res.Header.Get("Allow"), tc.status, tc.allow)
		}
	}

	res, err := s.client.Get(s.base + "/lb-status/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	csp := res.Header.Get("Content-Security-Policy")
	m := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9+/]+)'`).FindStringSubmatch(csp)
	if m == nil || !strings.Contains(string(b), `<script nonce="`+m[1]+`">`) {
		t.Fatalf("CSP %q does not allow the page's own script", csp)
	}
	if strings.Contains(string(b), "{{NONCE}}") || !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q or page not filled in", csp)
	}
	// Self-contained: nothing loaded from elsewhere (the one URL is the
	// SVG namespace, which is a name, not a fetch).
	for _, u := range regexp.MustCompile(`https?://[^"' )]+`).FindAllString(string(b), -1) {
		if u != "http://www.w3.org/2000/svg" {
			t.Errorf("the page refers to %s", u)
		}
	}
	if len(b) > 32<<10 {
		t.Errorf("the page is %d bytes; keep it small", len(b))
	}
	res2, err := s.client.Get(s.base + "/lb-status/")
	if err != nil {
		t.Fatal(err)
	}
	defer res2.Body.Close()
	if res2.Header.Get("Content-Security-Policy") == csp {
		t.Error("two page loads got one nonce")
	}
}

// getHost fetches path from the site with the given Host header.
func (s *site) getHost(t *testing.T, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
	req.Host = host
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestHostGuardAgainstRebinding: a dashboard in a site that answers any
// host name refuses a Host that names a domain (a rebound attacker's),
// unless a host matcher or `hosts` vouches for it.
func TestHostGuardAgainstRebinding(t *testing.T) {
	s := runSite(t, true)
	port := strings.TrimPrefix(s.base, "http://127.0.0.1:")
	for _, tc := range []struct {
		host, path string
		status     int
	}{
		{"evil.example:" + port, "/lb-status/data", 403},
		{"evil.example:" + port, "/lb-status/", 403},
		{"EVIL.example.:" + port, "/lb-status/data", 403},
		{"127.0.0.1:" + port, "/lb-status/data", 200},
		{"[::1]:" + port, "/lb-status/data", 200},
		{"localhost:" + port, "/lb-status/data", 200},
		{"app.localhost:" + port, "/lb-status/data", 200},
		{"status.example:" + port, "/named/data", 200},  // a host matcher guards it
		{"listed.example:" + port, "/listed/data", 200}, // listed in hosts
		{"evil.example:" + port, "/listed/data", 403},
	} {
		status, body := s.getHost(t, tc.host, tc.path)
		if status != tc.status || (status == 403 && !strings.Contains(body, "DNS rebinding")) {
			t.Errorf("Host %s %s: %d %.120s, want %d", tc.host, tc.path, status, body, tc.status)
		}
	}
	// The attack itself: the rebound page is same-origin to the browser,
	// so its Origin matches its Host, and it holds a token.
	evil := "evil.example:" + port
	req, _ := http.NewRequest(http.MethodPost, s.base+"/lb-status/action", strings.NewReader(fmt.Sprintf(`{"action":"drain","address":%q}`, s.live)))
	req.Host = evil
	req.Header.Set("Origin", "http://"+evil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(tokenHeader, newToken(time.Now()))
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden || s.row(t, s.data(t), s.live).Draining {
		t.Fatalf("a rebound drain: %s, draining %v", res.Status, s.row(t, s.data(t), s.live).Draining)
	}
}

// TestStoreDownShowsInTheView kills the Redis the sticky policy's store
// uses: the view still answers, in time, and says what it cannot know.
func TestStoreDownShowsInTheView(t *testing.T) {
	redis := testproc.StartRedis(t)
	s := runSiteOn(t, true, `{"policy": "sticky", "header": "X-Session", "store": "mem"}`,
		fmt.Sprintf(`{"backend": "redis", "addresses": [%q], "timeout": "300ms"}`, redis.Addr))
	v := s.data(t)
	if len(v.Stores) != 1 || !v.Stores[0].Reachable || v.Stores[0].Backend != "redis" || !v.Stores[0].Shared {
		t.Fatalf("stores with Redis up: %+v", v.Stores)
	}
	if row := s.row(t, v, s.live); row.DrainingUnknown || row.BoundSessions < 0 {
		t.Fatalf("row with Redis up: %+v", row)
	}
	redis.Kill()
	time.Sleep(1100 * time.Millisecond) // past the view's one-second cache
	start := time.Now()
	v = s.data(t)
	took := time.Since(start)
	if took > 4*time.Second {
		t.Errorf("the view took %v with the store down", took)
	}
	t.Logf("the view with Redis down took %v", took)
	st := v.Stores[0]
	if st.Reachable || st.ProbeError == "" {
		t.Errorf("store with Redis down: %+v", st)
	}
	// The count is unknown; the drain flags are the last ones read
	// (the Redis client's cache answers them), or unknown.
	row := s.row(t, v, s.live)
	if row.BoundSessions != -1 || row.Draining {
		t.Errorf("row with Redis down: bound_sessions %d, draining %v; want -1 and not draining", row.BoundSessions, row.Draining)
	}
	if !slices.ContainsFunc(v.Errors, func(e string) bool { return strings.Contains(e, "session store mem") }) {
		t.Errorf("the view's errors do not name the store: %q", v.Errors)
	}
	// A drain cannot be written: the page is told why, with a 502.
	status, body := s.post(t, fmt.Sprintf(`{"action":"drain","address":%q}`, s.live), nil)
	if status != http.StatusBadGateway || !strings.Contains(body, "setting drain") {
		t.Errorf("drain with Redis down: %d %s, want 502", status, body)
	}
}
