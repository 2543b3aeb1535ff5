package affinity

import (
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// setCookie adds the LB cookie to the response. A request sets it at most
// once: when a retry picks another upstream, the earlier line is replaced.
// w is nil when another policy calls this one as its fallback.
func (s *Sticky) setCookie(w http.ResponseWriter, r *http.Request, st *requestState, value string) {
	if w == nil {
		return
	}
	c := &http.Cookie{
		Name:     s.Cookie,
		Value:    value,
		Path:     s.Path,
		Domain:   s.Domain,
		HttpOnly: true,
		SameSite: s.sameSite,
		Secure:   s.Secure || s.sameSite == http.SameSiteNoneMode || isHTTPS(r),
	}
	if s.MaxAge > 0 {
		c.MaxAge = int(time.Duration(s.MaxAge) / time.Second)
	}
	line := c.String()
	h := w.Header()
	if st.setCookie != "" {
		removeHeaderValue(h, "Set-Cookie", st.setCookie)
	}
	h.Add("Set-Cookie", line)
	st.setCookie = line
	markPrivate(h)
}

// isHTTPS reports whether the client used HTTPS: TLS here, the forwarded
// handler's verdict, or a trusted proxy in front says so.
func isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	// The forwarded handler's verdict, also when it sends no X-Forwarded-Proto.
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if proto, ok := repl.GetString("http.forwarded.proto"); ok && proto != "" {
			return proto == "https"
		}
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		xfp := r.Header.Values("X-Forwarded-Proto")
		return len(xfp) > 0 && strings.EqualFold(strings.TrimSpace(xfp[len(xfp)-1]), "https")
	}
	return false
}

// markPrivate keeps shared caches from storing a response that pins a
// client: a cached Set-Cookie would pin every client to one upstream.
// Cache-Control becomes private unless it already says no-store or private;
// "public" and "s-maxage" are dropped. The upstream's own Cache-Control is
// added by reverse_proxy after Select, so sticky_learn runs this again on
// the final headers; without it, the upstream's field line stands beside
// "private".
func markPrivate(h http.Header) {
	// CDN-specific cache controls (RFC 9213, Surrogate-Control) would let
	// a CDN store the response whatever Cache-Control says.
	h.Del("CDN-Cache-Control")
	h.Del("Surrogate-Control")
	values := h.Values("Cache-Control")
	if len(values) == 0 {
		h.Set("Cache-Control", "private")
		return
	}
	directives := []string{"private"}
	for _, v := range values {
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			name := strings.ToLower(d)
			if i := strings.IndexByte(name, '='); i >= 0 {
				name = name[:i]
			}
			switch name {
			case "no-store", "private":
				return
			case "", "public", "s-maxage":
				continue
			}
			directives = append(directives, d)
		}
	}
	h.Set("Cache-Control", strings.Join(directives, ", "))
}

func removeHeaderValue(h http.Header, name, value string) {
	values := h[http.CanonicalHeaderKey(name)]
	out := values[:0]
	for _, v := range values {
		if v != value {
			out = append(out, v)
		}
	}
	h[http.CanonicalHeaderKey(name)] = out
}
