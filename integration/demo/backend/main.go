// Command backend is the demo web application that stands behind caddy-lb in
// `make run` and in the integration tests. It behaves like a small PHP or
// Laravel app: it issues session cookies, remembers which sessions it issued,
// and builds absolute URLs from the forwarded headers it receives, so a test
// can see from the outside which backend answered and whether that backend
// holds the caller's session.
//
// Usage:
//
//	backend -listen 127.0.0.1:9001 -name b1
//	backend -listen 127.0.0.1:9001 -name b1 -tls-listen 127.0.0.1:9441 \
//	    -tls-cert chain.pem -tls-key key.pem -tls-client-ca ca.pem
//
// With -tls-listen the same application (the same sessions) is also served
// over HTTPS, as a backend behind `transport reencrypt` is: -tls-cert and
// -tls-key are what `caddy lb-cert` wrote (chain.pem, key.pem), and
// -tls-client-ca (its ca.pem) makes the backend require a client
// certificate from that CA, so only the load balancer can connect.
//
// Every response carries the header X-Backend: <name>. Routes:
//
//	/               backend=<name> path=<path> (also every unmatched path)
//	/login          issues PHPSESSID and laravel_session cookies
//	/logout         expires PHPSESSID and forgets the session
//	/whoami         {"backend", "session", "known", "token", "token_known"} as JSON
//	/token          issues a token in the X-Session-Token response header
//	/headers        the forwarding headers received, as JSON
//	/tls            how the request reached the backend: TLS version, client certificate
//	/redirect       302 to an absolute /whoami URL built from X-Forwarded-*
//	/slow?ms=N      answers after N milliseconds (at most 5 s)
//	/status?code=N  answers with status N
//	/health         200 "ok"
//	/upload         verifies asset_offload references (see upload.go)
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxSlow caps /slow so a test cannot park a request for long.
const maxSlow = 5 * time.Second

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address to listen on")
	name := flag.String("name", "b1", "backend name, sent in the X-Backend header")
	var tlsOpts tlsOptions
	flag.StringVar(&tlsOpts.listen, "tls-listen", "", "also serve HTTPS on this address (needs -tls-cert and -tls-key)")
	flag.StringVar(&tlsOpts.certFile, "tls-cert", "", "PEM certificate chain for -tls-listen (lb-cert's chain.pem)")
	flag.StringVar(&tlsOpts.keyFile, "tls-key", "", "PEM private key for -tls-listen (lb-cert's key.pem)")
	flag.StringVar(&tlsOpts.clientCAFile, "tls-client-ca", "", "require client certificates that verify against this PEM CA (lb-cert's ca.pem)")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("backend", *name)
	if err := run(*listen, *name, tlsOpts, logger); err != nil {
		logger.Error("backend stopped", "error", err)
		os.Exit(1)
	}
}

// run serves until SIGTERM or SIGINT, then shuts down gracefully: requests in
// flight finish (up to 10 s), new connections are refused. With
// tlsOpts.listen set, the same application is served over HTTPS as well,
// so a session issued over one listener is known on the other.
func run(listen, name string, tlsOpts tlsOptions, logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	var tlsConfig *tls.Config
	if tlsOpts.listen != "" {
		var err error
		if tlsConfig, err = tlsOpts.config(); err != nil {
			return err
		}
	} else if tlsOpts.certFile != "" || tlsOpts.keyFile != "" || tlsOpts.clientCAFile != "" {
		return errors.New("-tls-cert, -tls-key and -tls-client-ca need -tls-listen")
	}

	handler := newApp(name).routes()
	var servers []*http.Server
	served := make(chan error, 2)
	serve := func(addr string, tlsConfig *tls.Config) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, TLSConfig: tlsConfig}
		servers = append(servers, srv)
		if tlsConfig != nil {
			ln = tls.NewListener(ln, tlsConfig)
		}
		go func() { served <- srv.Serve(ln) }()
		logger.Info("listening", "address", ln.Addr().String(), "tls", tlsConfig != nil,
			"client_certs_required", tlsConfig != nil && tlsConfig.ClientAuth == tls.RequireAndVerifyClientCert)
		return nil
	}
	if err := serve(listen, nil); err != nil {
		return err
	}
	if tlsConfig != nil {
		if err := serve(tlsOpts.listen, tlsConfig); err != nil {
			servers[0].Close()
			return err
		}
	}

	select {
	case err := <-served:
		for _, srv := range servers {
			srv.Close()
		}
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			errs = append(errs, fmt.Errorf("shutting down: %w", err))
		}
	}
	for range servers {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// app is one backend: its name and the sessions and tokens it issued.
type app struct {
	name string

	mu       sync.Mutex
	sessions map[string]bool
	tokens   map[string]bool
}

func newApp(name string) *app {
	return &app{name: name, sessions: make(map[string]bool), tokens: make(map[string]bool)}
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", a.index)
	mux.HandleFunc("/login", a.login)
	mux.HandleFunc("/logout", a.logout)
	mux.HandleFunc("/whoami", a.whoami)
	mux.HandleFunc("/token", a.token)
	mux.HandleFunc("/headers", a.headers)
	mux.HandleFunc("/tls", a.tlsInfo)
	mux.HandleFunc("/redirect", a.redirect)
	mux.HandleFunc("/slow", a.slow)
	mux.HandleFunc("/status", a.status)
	mux.HandleFunc("/health", a.health)
	mux.HandleFunc("/upload", a.upload)
	return a.withBackendHeader(mux)
}

// withBackendHeader names this backend on every response, including errors,
// so a client can always tell who answered.
func (a *app) withBackendHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", a.name)
		next.ServeHTTP(w, r)
	})
}

func (a *app) index(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "backend=%s path=%s\n", a.name, r.URL.Path)
}

// login issues cookies byte for byte as PHP's session extension and Laravel
// do, lower-case attributes included, so stickiness that learns an
// application's cookie is tested against what real applications send.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	id := randomHex(16)
	a.mu.Lock()
	a.sessions[id] = true
	a.mu.Unlock()
	w.Header().Add("Set-Cookie", "PHPSESSID="+id+"; path=/; HttpOnly")
	w.Header().Add("Set-Cookie", "laravel_session="+randomHex(20)+"; path=/; httponly; samesite=lax")
	fmt.Fprintf(w, "backend=%s session=%s\n", a.name, id)
}

// logout expires the session cookie the way PHP's session_destroy plus
// setcookie does, and forgets the session.
func (a *app) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie("PHPSESSID"); err == nil {
		a.mu.Lock()
		delete(a.sessions, c.Value)
		a.mu.Unlock()
	}
	w.Header().Add("Set-Cookie", "PHPSESSID=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/")
	fmt.Fprintf(w, "backend=%s logged out\n", a.name)
}

// whoamiResponse tells a test which backend answered and whether that
// backend holds the caller's session: known is true only on the backend that
// issued the session id.
type whoamiResponse struct {
	Backend    string `json:"backend"`
	Session    string `json:"session"`
	Known      bool   `json:"known"`
	Token      string `json:"token"`
	TokenKnown bool   `json:"token_known"`
}

func (a *app) whoami(w http.ResponseWriter, r *http.Request) {
	resp := whoamiResponse{Backend: a.name, Token: r.Header.Get("X-Session-Token")}
	if c, err := r.Cookie("PHPSESSID"); err == nil {
		resp.Session = c.Value
	}
	a.mu.Lock()
	resp.Known = resp.Session != "" && a.sessions[resp.Session]
	resp.TokenKnown = resp.Token != "" && a.tokens[resp.Token]
	a.mu.Unlock()
	writeJSON(w, resp)
}

// token issues a session token in a response header, as API backends do
// for clients that send it back in a request header.
func (a *app) token(w http.ResponseWriter, r *http.Request) {
	tok := randomHex(16)
	a.mu.Lock()
	a.tokens[tok] = true
	a.mu.Unlock()
	w.Header().Set("X-Session-Token", tok)
	fmt.Fprintf(w, "backend=%s token=%s\n", a.name, tok)
}

// isForwardingHeader reports whether name belongs to the forwarding family
// that /headers echoes: Forwarded, X-Forwarded-*, X-Real-IP,
// True-Client-IP, in any spelling (underscores reach PHP as the same
// variable, so tests must see them too).
func isForwardingHeader(name string) bool {
	n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	switch n {
	case "forwarded", "x-real-ip", "true-client-ip", "cf-connecting-ip", "cf-connecting-ipv6",
		"fastly-client-ip", "akamai-client-ip", "x-azure-clientip", "x-original-forwarded-for",
		"x-remote-addr", "x-remote-ip", "x-originating-ip", "x-envoy-external-address":
		return true
	}
	// X-Seen-* are what a test's header_up wrote, to compare with the rest.
	return strings.HasPrefix(n, "x-forwarded-") || strings.HasPrefix(n, "x-seen-")
}

// headers echoes the forwarding headers as one JSON object keyed by the
// name as received. A header that was not sent is absent from the object;
// several lines of one header are joined with ", ".
func (a *app) headers(w http.ResponseWriter, r *http.Request) {
	out := map[string]string{"Host": r.Host, "RemoteAddr": r.RemoteAddr}
	for name, values := range r.Header {
		if isForwardingHeader(name) {
			out[name] = strings.Join(values, ", ")
		}
	}
	writeJSON(w, out)
}

// redirect sends the client to /whoami with an absolute URL built from the
// forwarded headers, as Laravel and Symfony do behind a trusted proxy: a
// wrong X-Forwarded-* shows up as a wrong Location.
func (a *app) redirect(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Location", externalBaseURL(r)+"/whoami")
	w.WriteHeader(http.StatusFound)
}

// externalBaseURL is scheme://host[:port] as the client saw it: the first
// value of each X-Forwarded-* header when present, else the request itself.
// The port is left out when it is the scheme's default.
func externalBaseURL(r *http.Request) string {
	scheme := firstListValue(r.Header.Get("X-Forwarded-Proto"))
	if scheme == "" {
		scheme = "http"
	}
	host := firstListValue(r.Header.Get("X-Forwarded-Host"))
	if host == "" {
		host = r.Host
	}
	hostname, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		hostname, port = h, p
	}
	if fp := firstListValue(r.Header.Get("X-Forwarded-Port")); fp != "" {
		port = fp
	}
	if port == "" || (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		if strings.Contains(hostname, ":") {
			return scheme + "://[" + hostname + "]"
		}
		return scheme + "://" + hostname
	}
	return scheme + "://" + net.JoinHostPort(hostname, port)
}

// firstListValue is the first element of a comma-separated header value,
// the one the outermost proxy wrote.
func firstListValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}

func (a *app) slow(w http.ResponseWriter, r *http.Request) {
	ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
	d := min(time.Duration(max(ms, 0))*time.Millisecond, maxSlow)
	select {
	case <-time.After(d):
	case <-r.Context().Done():
		return
	}
	fmt.Fprintf(w, "backend=%s slept=%s\n", a.name, d)
}

func (a *app) status(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.URL.Query().Get("code"))
	if err != nil || code < 200 || code > 599 {
		http.Error(w, "code must be a status between 200 and 599", http.StatusBadRequest)
		return
	}
	w.WriteHeader(code)
	fmt.Fprintf(w, "backend=%s status=%d\n", a.name, code)
}

func (a *app) health(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintln(w, "ok")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: crypto/rand panics instead (Go 1.24+)
	return hex.EncodeToString(b)
}
