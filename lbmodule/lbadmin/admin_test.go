package lbadmin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/caddylb/caddylb/internal/testproc"
	_ "github.com/caddylb/caddylb/lbmodule/affinity"
	_ "github.com/caddylb/caddylb/sessionstore"
)

// runConfig loads a config with one sticky reverse_proxy on a memory
// store in front of two upstreams that are never dialled, and stops it
// when the test ends.
func runConfig(t *testing.T) {
	t.Helper()
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true},
		"apps": {
			"session_store": {"stores": {"mem": {"backend": "memory"}}},
			"http": {"servers": {"srv": {
				"listen": [%q],
				"routes": [{"handle": [{
					"handler": "reverse_proxy",
					"upstreams": [{"dial": "127.0.0.1:9"}, {"dial": "127.0.0.1:10"}],
					"load_balancing": {"selection_policy": {"policy": "sticky", "header": "X-Session", "store": "mem"}}
				}]}]
			}}}
		}
	}`, testproc.FreeAddr(t))
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
}

// call runs an admin handler the way the admin endpoint does and returns
// the status and body.
func call(t *testing.T, h caddy.AdminHandlerFunc, method, target, body string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	err := h(w, httptest.NewRequest(method, target, strings.NewReader(body)))
	if err != nil {
		var apiErr caddy.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		return apiErr.HTTPStatus, apiErr.Err.Error()
	}
	return w.Code, w.Body.String()
}

func TestAdminAPI(t *testing.T) {
	runConfig(t)

	status, body := call(t, handleUpstreams, http.MethodGet, "/lb/upstreams", "")
	var ups []UpstreamStatus
	if status != http.StatusOK || json.Unmarshal([]byte(body), &ups) != nil || len(ups) != 2 {
		t.Fatalf("GET /lb/upstreams: %d %s", status, body)
	}
	if ups[0].Address != "127.0.0.1:9" || ups[0].Store != "mem" || ups[0].KeyModes[0] != "header" || ups[0].Draining {
		t.Fatalf("upstream %+v", ups[0])
	}
	if status, _ := call(t, handleUpstreams, http.MethodPost, "/lb/upstreams", ""); status != http.StatusMethodNotAllowed {
		t.Fatalf("POST /lb/upstreams: %d", status)
	}
	if status, body := call(t, handleUpstreams, http.MethodGet, "/lb/upstreams?fleet=maybe", ""); status != http.StatusBadRequest {
		t.Fatalf("fleet=maybe: %d %s", status, body)
	}
	status, body = call(t, handleUpstreams, http.MethodGet, "/lb/upstreams?fleet=1", "")
	if status != http.StatusOK || !strings.Contains(body, `"fleet_nodes":1`) {
		t.Fatalf("fleet=1 on a memory store: %d %s", status, body)
	}

	// Drain: the flag is in the store and shows in the listing.
	for _, tc := range []struct {
		method, body string
		want         int
	}{
		{http.MethodPost, `{"address": "127.0.0.1:9"}`, http.StatusOK},
		{http.MethodPost, `{"address": "10.9.9.9:1"}`, http.StatusNotFound},
		{http.MethodPost, `{}`, http.StatusBadRequest},
		{http.MethodPost, `{"address": `, http.StatusBadRequest},
		{http.MethodGet, ``, http.StatusMethodNotAllowed},
		{http.MethodDelete, `{"address": "10.9.9.9:1"}`, http.StatusOK}, // undrain accepts any address
	} {
		if status, body := call(t, handleDrain, tc.method, "/lb/upstreams/drain", tc.body); status != tc.want {
			t.Fatalf("%s drain %s: %d %s, want %d", tc.method, tc.body, status, body, tc.want)
		}
	}
	_, body = call(t, handleUpstreams, http.MethodGet, "/lb/upstreams", "")
	if !strings.Contains(body, `"address":"127.0.0.1:9","healthy":true,"available":true,"draining":true`) {
		t.Fatalf("drained upstream not listed as draining: %s", body)
	}

	// Sessions: none yet for this key; a bad request names what is missing.
	if status, body := call(t, handleSessions, http.MethodGet, "/lb/sessions", ""); status != http.StatusBadRequest || !strings.Contains(body, "?key=") {
		t.Fatalf("GET /lb/sessions without key: %d %s", status, body)
	}
	if status, _ := call(t, handleSessions, http.MethodGet, "/lb/sessions?key=nobody", ""); status != http.StatusNotFound {
		t.Fatalf("unknown session: %d", status)
	}
	if status, _ := call(t, handleSessions, http.MethodPut, "/lb/sessions?key=x", ""); status != http.StatusMethodNotAllowed {
		t.Fatalf("PUT /lb/sessions: %d", status)
	}

	// The fleet of a node without a shared store is itself.
	status, body = call(t, handleFleet, http.MethodGet, "/lb/fleet", "")
	if status != http.StatusOK || !strings.Contains(body, `"drift":[]`) || strings.Count(body, `"id":`) != 1 {
		t.Fatalf("GET /lb/fleet: %d %s", status, body)
	}
}
