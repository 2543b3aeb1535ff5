package affinity

import (
	"context"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Learn{})
}

// Learn is the sticky_learn handler. A selection policy never sees the
// upstream's response, yet that is where an application creates its
// session (HAProxy's `stick store-response`, NGINX's `sticky learn`).
// Placed ahead of reverse_proxy, this handler watches the response headers
// before they are written and lets the sticky policy that chose the
// upstream record the session: the application's Set-Cookie for app_cookie,
// the response header for header. It also makes sure a response that sets
// the LB cookie stays private even if the upstream marked it public.
//
// It has no options; a sticky policy with app_cookie refuses to load
// without it.
type Learn struct {
	scope *routeScope
}

// CaddyModule returns the Caddy module information.
func (Learn) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.sticky_learn",
		New: func() caddy.Module { return new(Learn) },
	}
}

// Provision registers the handler with the route list it is in, for the
// sticky policies provisioned after it there to find.
func (l *Learn) Provision(ctx caddy.Context) error {
	s := scopeOf(ctx)
	addLearnScope(s)
	l.scope = &s
	return nil
}

// Cleanup unregisters it.
func (l *Learn) Cleanup() error {
	if l.scope != nil {
		removeLearnScope(*l.scope)
		l.scope = nil
	}
	return nil
}

// ServeHTTP wraps the response writer and calls the next handler. When it
// returns, the proxy under it has finished its tries: they are counted
// for the dashboard and metrics then (settleOnReturn), also when it
// panics (Caddy's proxy aborts a response that broke after its headers
// with panic(http.ErrAbortHandler)): the last try failed then.
func (l *Learn) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (err error) {
	st := stateOf(r)
	st.learning = true
	lw := &learnWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, r: r, st: st}
	if st.inLearn {
		return next.ServeHTTP(lw, r) // a sticky_learn around this one counts
	}
	st.inLearn = true
	returned := false
	defer func() { st.settleOnReturn(!returned || err != nil) }() // the panic goes on
	err = next.ServeHTTP(lw, r)
	returned = true
	return err
}

// learnWriter learns from the response headers once, just before they go out.
type learnWriter struct {
	*caddyhttp.ResponseWriterWrapper
	r       *http.Request
	st      *requestState
	learned bool
}

func (lw *learnWriter) WriteHeader(status int) {
	if status >= 200 || status == http.StatusSwitchingProtocols {
		lw.learnOnce()
	}
	lw.ResponseWriterWrapper.WriteHeader(status)
}

func (lw *learnWriter) Write(p []byte) (int, error) {
	lw.learnOnce()
	return lw.ResponseWriterWrapper.Write(p)
}

func (lw *learnWriter) ReadFrom(r io.Reader) (int64, error) {
	lw.learnOnce()
	return lw.ResponseWriterWrapper.ReadFrom(r)
}

func (lw *learnWriter) learnOnce() {
	if lw.learned {
		return
	}
	lw.learned = true
	st := lw.st
	if st.policy == nil {
		return
	}
	h := lw.Header()
	if st.setCookie != "" {
		markPrivate(h) // again, now that the upstream's Cache-Control is in
	}
	// The store call must finish even if the client has gone.
	st.policy.learn(context.WithoutCancel(lw.r.Context()), lw.r, h, st.upstream)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Learn)(nil)
	_ caddy.CleanerUpper          = (*Learn)(nil)
	_ caddyhttp.MiddlewareHandler = (*Learn)(nil)
	_ caddyfile.Unmarshaler       = (*Learn)(nil)
)
