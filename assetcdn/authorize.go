package assetcdn

import (
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// hopHeaders are connection-scoped (RFC 9110 section 7.6.1) or describe a
// body the authorization request does not carry.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Content-Length", "Expect",
}

// relayedAuthHeaders are copied from a refusing authorization answer to
// the client, so a login redirect or a challenge works.
var relayedAuthHeaders = []string{"Content-Type", "Location", "WWW-Authenticate", "Set-Cookie", "Retry-After"}

// authorize asks the authorization URL whether this upload may proceed,
// before any byte of the body is read. A refusal is written to w.
func (o *Offload) authorize(w http.ResponseWriter, r *http.Request) (bool, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, o.Authorize, nil)
	if err != nil {
		return false, o.fail(w, r, http.StatusInternalServerError, "building the authorization request: "+err.Error())
	}
	req.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	// As forward_auth (a reverse_proxy) would: the client as Caddy sees
	// it (the real one behind the forwarded handler), never the
	// client's own claims.
	for _, h := range []string{"Forwarded", "X-Real-Ip", "X-Forwarded-Port"} {
		req.Header.Del(h)
	}
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		req.Header.Set("X-Forwarded-For", ip)
	} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		req.Header.Set("X-Forwarded-For", host)
	} else {
		req.Header.Del("X-Forwarded-For")
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	req.Header.Set("X-Forwarded-Proto", proto)
	req.Header.Set("X-Forwarded-Host", r.Host)
	req.Header.Set("X-Forwarded-Method", r.Method)
	req.Header.Set("X-Forwarded-Uri", r.RequestURI)
	if r.ContentLength >= 0 {
		req.Header.Set("X-Upload-Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	resp, err := o.authClient.Do(req)
	if err != nil {
		o.logger.Error("upload authorization request failed", zap.String("authorize", o.Authorize), zap.Error(err))
		return false, o.fail(w, r, http.StatusBadGateway, "the upload authorization endpoint could not be reached")
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return true, nil
	}
	for _, h := range relayedAuthHeaders {
		for _, v := range resp.Header.Values(h) {
			w.Header().Add(h, v)
		}
	}
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close") // the body is not read
	}
	w.WriteHeader(resp.StatusCode)
	_, err = io.Copy(w, io.LimitReader(resp.Body, 64<<10))
	return false, err
}
