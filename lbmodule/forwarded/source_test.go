package forwarded

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(refreshingSource{})
}

// refreshingSource stands in for an ip_sources plugin that refreshes a
// CDN's published ranges in the background.
type refreshingSource struct{}

var refreshed struct {
	sync.RWMutex
	ranges []netip.Prefix
}

func (refreshingSource) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.ip_sources.forwarded_test_refreshing",
		New: func() caddy.Module { return new(refreshingSource) },
	}
}

func (refreshingSource) GetIPRanges(*http.Request) []netip.Prefix {
	refreshed.RLock()
	defer refreshed.RUnlock()
	return refreshed.ranges
}

func TestTrustFollowsARefreshingSource(t *testing.T) {
	setRanges := func(ranges ...string) {
		refreshed.Lock()
		defer refreshed.Unlock()
		refreshed.ranges = nil
		for _, r := range ranges {
			refreshed.ranges = append(refreshed.ranges, netip.MustParsePrefix(r))
		}
	}
	setRanges("203.0.113.0/24")
	h := provision(t, &Handler{TrustedProxiesRaw: append(trusting("10.0.0.0/8"),
		json.RawMessage(`{"source": "forwarded_test_refreshing"}`))})

	cdnRequest := func() *http.Request {
		return request("203.0.113.5:1", "X-Forwarded-For", "198.51.100.9, 10.0.0.2")
	}
	if res := serve(t, h, cdnRequest()); res.clientIP != "198.51.100.9" {
		t.Fatalf("through the CDN: client_ip = %v, want 198.51.100.9", res.clientIP)
	}
	setRanges("192.0.2.0/24") // the CDN dropped 203.0.113.0/24
	if res := serve(t, h, cdnRequest()); res.clientIP != "203.0.113.5" {
		t.Errorf("after the refresh: client_ip = %v, want the no longer trusted peer 203.0.113.5", res.clientIP)
	}
}
