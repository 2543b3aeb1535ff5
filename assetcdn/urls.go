package assetcdn

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(URLs{})
}

// URLs makes environment-based asset URLs available as placeholders to
// the handlers after it, the way the asset_url template function does
// for templates:
//
//	{assets.url.img/logo.png}   the URL of the file built from img/logo.png
//	{assets.base_url}           the URL asset keys under prefix start with
//
// With a file store and `fallback local` they are local URLs in
// development; with an S3 store whose public_url is a CDN they are CDN
// URLs of the fingerprinted files named in the manifest. A typical use is
// telling the application behind reverse_proxy where its assets are:
// `header_up X-Asset-Host {assets.base_url}`, as Rails' asset_host or
// Laravel's ASSET_URL expect. It takes the same options as the templates
// extension and shares its manifest handling.
type URLs struct {
	AssetFunctions
}

// Placeholder names of URLs.
const (
	placeholderAssetURL  = "assets.url."
	placeholderAssetBase = "assets.base_url"
)

// CaddyModule returns the Caddy module information.
func (URLs) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.asset_urls",
		New: func() caddy.Module { return new(URLs) },
	}
}

// ServeHTTP adds the placeholders to the request's replacer.
func (u *URLs) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(u.placeholder)
	}
	return next.ServeHTTP(w, r)
}

// placeholder resolves the asset placeholders. A logical path that
// cannot be a key (".." segments, control characters) resolves to the
// empty string, never to a URL outside the store.
func (u *URLs) placeholder(key string) (any, bool) {
	switch {
	case key == placeholderAssetBase:
		return u.baseURL(), true
	case strings.HasPrefix(key, placeholderAssetURL):
		v, err := u.assetURL(key[len(placeholderAssetURL):])
		if err != nil {
			u.logger.Debug("asset placeholder", zap.String("placeholder", key), zap.Error(err))
			return "", true
		}
		return v, true
	}
	return nil, false
}

// Interface guards
var (
	_ caddy.Provisioner           = (*URLs)(nil)
	_ caddyhttp.MiddlewareHandler = (*URLs)(nil)
	_ caddyfile.Unmarshaler       = (*URLs)(nil)
)
