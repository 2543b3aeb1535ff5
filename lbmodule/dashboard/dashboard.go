// Package dashboard is the lb_dashboard handler (http.handlers.lb_dashboard):
// a status page for the browser, like HAProxy's stats page, served by any
// site so that it sits behind basic_auth, forward_auth or a remote_ip
// matcher. It shows every upstream of every reverse_proxy and pass-through
// pool, the sticky policies' outcomes, the session and asset stores, log
// shipping and the fleet, refreshing itself from a JSON endpoint of the
// handler. With `actions`, it drains and undrains upstreams and forgets
// sessions through the admin API's code, guarded against cross-site
// requests and audited in the log.
//
// Paths, relative to where the handler is mounted: anything but the two
// below serves the page; "data" (GET) answers the JSON view; "action"
// (POST) takes an action.
//
// See docs/dashboard.md.
package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Dashboard{})
}

// Dashboard is the lb_dashboard handler.
type Dashboard struct {
	// Show Drain / Undrain buttons per upstream and a form to forget a
	// session, and take those actions. Without it the page is read-only
	// and every action request is refused with 403.
	Actions bool `json:"actions,omitempty"`

	// How often the page asks for new data. Default: 2s; between 500ms
	// and 1m.
	Refresh caddy.Duration `json:"refresh,omitempty"`

	// Host names the page may be opened by when its site answers any
	// host name (":8080"): without them, only an IP address or localhost
	// (a guard against DNS rebinding; see docs/dashboard.md). A site
	// with host names of its own needs none.
	Hosts []string `json:"hosts,omitempty"`

	refresh time.Duration
	hosts   []string
	guard   *hostGuard
	hist    *history
	release func()
	logger  *zap.Logger

	cache *viewCache
}

// viewCache holds the view, built at most once per viewCacheFor and
// shared by every open page; an action drops it.
type viewCache struct {
	mu   sync.Mutex
	body []byte
	at   time.Time
}

const (
	defaultRefresh = 2 * time.Second
	minRefresh     = 500 * time.Millisecond
	maxRefresh     = time.Minute
	viewCacheFor   = time.Second
	// viewTimeout bounds the store calls one view makes.
	viewTimeout = 3 * time.Second
)

// CaddyModule returns the Caddy module information.
func (Dashboard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.lb_dashboard",
		New: func() caddy.Module { return new(Dashboard) },
	}
}

// Provision applies the defaults and joins the process's history.
func (d *Dashboard) Provision(ctx caddy.Context) error {
	d.logger = ctx.Logger()
	d.refresh = time.Duration(d.Refresh)
	if d.refresh == 0 {
		d.refresh = defaultRefresh
	}
	for _, h := range d.Hosts {
		d.hosts = append(d.hosts, normalizeHost(h))
	}
	d.cache = new(viewCache)
	d.guard = new(hostGuard)
	d.hist, d.release = useHistory()
	return nil
}

// Validate checks the refresh interval.
func (d *Dashboard) Validate() error {
	if d.refresh < minRefresh || d.refresh > maxRefresh {
		return fmt.Errorf("lb_dashboard: refresh %v is outside %v to %v", d.refresh, minRefresh, maxRefresh)
	}
	return nil
}

// ServeHTTP serves the page, its data, and its actions. It is terminal:
// it never calls next.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	setSecurityHeaders(w.Header())
	if err := d.hostAllowed(r); err != nil {
		return writeError(w, http.StatusForbidden, err.Error())
	}
	switch lastSegment(r.URL.Path) {
	case "data":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return methodNotAllowed(w, http.MethodGet, http.MethodHead)
		}
		return d.serveData(w, r)
	case "action":
		if r.Method != http.MethodPost {
			return methodNotAllowed(w, http.MethodPost)
		}
		return d.serveAction(w, r)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed(w, http.MethodGet, http.MethodHead)
	}
	return servePage(w, r)
}

func lastSegment(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}

// serveData answers the JSON view, shared for a second between viewers.
func (d *Dashboard) serveData(w http.ResponseWriter, r *http.Request) error {
	body, err := d.view(r.Context())
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

func (d *Dashboard) view(ctx context.Context) ([]byte, error) {
	c := d.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.body != nil && now.Sub(c.at) < viewCacheFor {
		return c.body, nil
	}
	// Not the viewer's own context: the view is shared, and one who
	// leaves must not leave an error view to the others.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), viewTimeout)
	defer cancel()
	v := buildView(ctx, d.hist, now)
	v.RefreshMS = d.refresh.Milliseconds()
	v.Actions = d.Actions
	if d.Actions {
		v.Token = newToken(now)
	}
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("lb_dashboard: encoding the view: %v", err)
	}
	c.body, c.at = body, now
	return body, nil
}

// dropView makes the next request build the view anew.
func (d *Dashboard) dropView() {
	d.cache.mu.Lock()
	d.cache.body = nil
	d.cache.mu.Unlock()
}

// setSecurityHeaders keeps the page and its data to this origin: no
// framing, no caching, nothing loaded from elsewhere.
func setSecurityHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

func methodNotAllowed(w http.ResponseWriter, allowed ...string) error {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	return writeError(w, http.StatusMethodNotAllowed, "method not allowed here (allowed: "+strings.Join(allowed, ", ")+")")
}

// Cleanup leaves the history, which stops when no dashboard is left.
func (d *Dashboard) Cleanup() error {
	if d.release != nil {
		d.release()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Dashboard)(nil)
	_ caddy.Validator             = (*Dashboard)(nil)
	_ caddy.CleanerUpper          = (*Dashboard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Dashboard)(nil)
)
