package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/lbmodule/lbadmin"
)

// An action is a POST of a JSON object to "action":
//
//	{"action": "drain" | "undrain", "address": "10.0.0.1:80"}
//	{"action": "forget_session", "key": "<cookie value, session id, header value or IP>"}
//
// It must come from the page: the Origin header names this site (a
// browser sends it on every cross-site POST and cannot be made to lie),
// Sec-Fetch-Site, when sent, says same-origin, the body is JSON (which a
// cross-site form cannot send without a CORS preflight), and the
// X-LB-Dashboard-Token header carries a token the page read from the
// data endpoint (which another site cannot read).
type actionRequest struct {
	Action  string `json:"action"`
	Address string `json:"address,omitempty"`
	Key     string `json:"key,omitempty"`
}

const (
	tokenHeader   = "X-LB-Dashboard-Token"
	tokenLifetime = 12 * time.Hour
	maxActionBody = 16 << 10
	// actionTimeout bounds the store calls of one action.
	actionTimeout = 5 * time.Second
)

// tokenKey signs this process's action tokens. A token is only good on
// the node that issued it, and until it restarts: the page fetches a
// fresh one with every refresh.
var tokenKey = func() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("lb_dashboard: no randomness for the action token key: %v", err))
	}
	return b
}()

// newToken is "<unix expiry>.<base64url HMAC of it>".
func newToken(now time.Time) string {
	exp := strconv.FormatInt(now.Add(tokenLifetime).Unix(), 10)
	return exp + "." + tokenMAC(exp)
}

func tokenMAC(exp string) string {
	m := hmac.New(sha256.New, tokenKey)
	m.Write([]byte("lb_dashboard action v1\x00" + exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkToken reports why tok is not a live token of this process, or nil.
func checkToken(tok string, now time.Time) error {
	if tok == "" {
		return fmt.Errorf("missing %s header (reload the page)", tokenHeader)
	}
	exp, mac, ok := strings.Cut(tok, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(tokenMAC(exp))) {
		return fmt.Errorf("%s is not a token of this node (reload the page)", tokenHeader)
	}
	secs, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || now.Unix() > secs {
		return fmt.Errorf("%s has expired (reload the page)", tokenHeader)
	}
	return nil
}

// sameOrigin reports why r is not a same-origin request from a browser
// page of this site, or nil.
func sameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("cross-site request refused (Sec-Fetch-Site: %s)", site)
	}
	origin := r.Header.Values("Origin")
	if len(origin) != 1 || origin[0] == "" || origin[0] == "null" {
		return errors.New("cross-site request refused: the Origin header is missing (actions come from the dashboard page)")
	}
	u, err := url.Parse(origin[0])
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.User != nil {
		return fmt.Errorf("cross-site request refused: Origin %q is not a web origin", origin[0])
	}
	sites := siteOrigins(r)
	for _, site := range sites {
		if strings.EqualFold(u.Scheme+"://"+u.Host, site) {
			return nil
		}
	}
	return fmt.Errorf("cross-site request refused: Origin %q is not this site (%s)", origin[0], strings.Join(sites, " or "))
}

// siteOrigins are the origins the page may have been loaded from: the
// scheme and Host of the request as this server received it and, behind
// a proxy the `forwarded` handler trusts (a CDN terminating TLS), the
// scheme, host and port the client used, which that handler established.
func siteOrigins(r *http.Request) []string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	out := []string{scheme + "://" + r.Host}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return out
	}
	proto, _ := repl.GetString("http.forwarded.proto")
	host, _ := repl.GetString("http.forwarded.host")
	if proto == "" || host == "" {
		return out
	}
	if port, _ := repl.GetString("http.forwarded.port"); port != "" && !(proto == "https" && port == "443") && !(proto == "http" && port == "80") {
		if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(strings.Trim(host, "[]"), port)
		}
	}
	if o := proto + "://" + host; !slices.Contains(out, o) {
		out = append(out, o)
	}
	return out
}

// serveAction checks and takes one action, and logs who took it.
func (d *Dashboard) serveAction(w http.ResponseWriter, r *http.Request) error {
	if !d.Actions {
		return writeError(w, http.StatusForbidden, "actions are off: this dashboard is read-only (add `actions` to lb_dashboard to allow them)")
	}
	if err := sameOrigin(r); err != nil {
		d.audit(r, actionRequest{}, "refused", err)
		return writeError(w, http.StatusForbidden, err.Error())
	}
	if err := checkToken(r.Header.Get(tokenHeader), time.Now()); err != nil {
		d.audit(r, actionRequest{}, "refused", err)
		return writeError(w, http.StatusForbidden, err.Error())
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("the body must be application/json, got Content-Type %q", r.Header.Get("Content-Type")))
	}
	var req actionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxActionBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the action body is over %d bytes", maxActionBody))
		}
		return writeError(w, http.StatusBadRequest, fmt.Sprintf("decoding the action: %v", err))
	}
	if dec.More() {
		return writeError(w, http.StatusBadRequest, "decoding the action: more than one JSON value")
	}
	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	result, err := take(ctx, req)
	d.dropView()
	if err != nil {
		d.audit(r, req, "failed", err)
		status := http.StatusBadRequest
		var apiErr caddy.APIError
		if errors.As(err, &apiErr) {
			status, err = apiErr.HTTPStatus, apiErr.Err
		}
		return writeError(w, status, err.Error())
	}
	d.audit(r, req, "done", nil)
	return writeJSON(w, http.StatusOK, result)
}

// take runs the action through the admin API's own functions, so that a
// drain lands in the shared store every node reads.
func take(ctx context.Context, req actionRequest) (map[string]any, error) {
	switch req.Action {
	case "drain", "undrain":
		if req.Address == "" {
			return nil, errors.New(`missing "address" of the upstream`)
		}
		if req.Key != "" {
			return nil, fmt.Errorf(`"key" does not go with %q`, req.Action)
		}
		stores, err := lbadmin.SetDraining(ctx, req.Address, req.Action == "drain")
		if err != nil {
			return nil, err
		}
		return map[string]any{"action": req.Action, "address": req.Address, "draining": req.Action == "drain", "stores": stores}, nil
	case "forget_session":
		if req.Key == "" {
			return nil, errors.New(`missing "key" of the session`)
		}
		if req.Address != "" {
			return nil, errors.New(`"address" does not go with "forget_session"`)
		}
		found, err := lbadmin.Sessions(ctx, req.Key, true)
		if err != nil {
			return nil, err
		}
		return map[string]any{"action": req.Action, "deleted": found}, nil
	case "":
		return nil, errors.New(`missing "action" (drain, undrain or forget_session)`)
	}
	return nil, fmt.Errorf("unknown action %q (known: drain, undrain, forget_session)", req.Action)
}

// audit logs an action request: who (the authenticated user, if a
// handler before this one set one, and the client address), what, and
// how it ended. A session key is a credential: only a digest is logged.
func (d *Dashboard) audit(r *http.Request, req actionRequest, result string, err error) {
	fields := []zap.Field{
		zap.String("action", req.Action),
		zap.String("result", result),
		zap.String("remote_ip", remoteIP(r)),
		zap.String("user_agent", r.UserAgent()),
		zap.String("host", r.Host),
		zap.String("origin", r.Header.Get("Origin")),
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if user, _ := repl.GetString("http.auth.user.id"); user != "" {
			fields = append(fields, zap.String("user", user))
		}
	}
	if req.Address != "" {
		fields = append(fields, zap.String("address", req.Address))
	}
	if req.Key != "" {
		sum := sha256.Sum256([]byte(req.Key))
		fields = append(fields, zap.String("key_sha256", hex.EncodeToString(sum[:8])))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
		d.logger.Warn("dashboard action", fields...)
		return
	}
	d.logger.Info("dashboard action", fields...)
}

// remoteIP is the client's address as Caddy determined it (trusted
// proxies applied), else the peer's.
func remoteIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// writeError answers {"error": msg} with status, for the page to show.
func writeError(w http.ResponseWriter, status int, msg string) error {
	return writeJSON(w, status, map[string]string{"error": msg})
}
