// Package caddyfile registers caddy-lb's Caddyfile surface in one place:
// global options (session_store, asset_store, ship_logs), handler directives (forwarded,
// asset_urls, asset_offload, sticky_learn, asset_presign, asset_serve,
// lb_dashboard) and
// where they sit in Caddy's directive order. The modules themselves parse
// their own blocks (UnmarshalCaddyfile beside each module).
//
// See docs/architecture.md (the request path) and the option tables of
// each page in docs/.
package caddyfile

import (
	"encoding/json"
	"fmt"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddylb/caddylb/assetcdn"
	"github.com/caddylb/caddylb/lbmodule/affinity"
	"github.com/caddylb/caddylb/lbmodule/dashboard"
	"github.com/caddylb/caddylb/lbmodule/forwarded"
	"github.com/caddylb/caddylb/logship"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("session_store", parseSessionStore)
	httpcaddyfile.RegisterGlobalOption("asset_store", parseAssetStore)
	httpcaddyfile.RegisterGlobalOption("ship_logs", parseShipLogs)

	httpcaddyfile.RegisterHandlerDirective("forwarded", parseForwarded)
	// First of all: every later handler, matcher and log must see the
	// real client and scheme.
	httpcaddyfile.RegisterDirectiveOrder("forwarded", httpcaddyfile.Before, "tracing")

	httpcaddyfile.RegisterHandlerDirective("sticky_learn", parseStickyLearn)
	// It wraps the response of everything after it, so it comes before
	// handle, handle_path and route: a reverse_proxy inside one of those
	// blocks is then learned from too (a site-level sticky_learn ordered
	// after them would never run for their requests).
	httpcaddyfile.RegisterDirectiveOrder("sticky_learn", httpcaddyfile.Before, "tracing")

	httpcaddyfile.RegisterHandlerDirective("asset_offload", parseAssetOffload)
	// Files must be stored and replaced by references before the request
	// is proxied, also when the proxy sits in a handle, handle_path or
	// route block: ordered after authentication (basic_auth,
	// forward_auth) and before those blocks, so that no upload reaches a
	// proxy around it.
	httpcaddyfile.RegisterDirectiveOrder("asset_offload", httpcaddyfile.Before, "invoke")

	httpcaddyfile.RegisterHandlerDirective("asset_urls", parseAssetURLs)
	// Its placeholders must exist before map, header, redir and the
	// proxy's header_up read them.
	httpcaddyfile.RegisterDirectiveOrder("asset_urls", httpcaddyfile.Before, "map")

	// Both answer on their own and never call the next handler: they
	// come after asset_offload (which stores what is POSTed to the same
	// paths) and before reverse_proxy, which would otherwise take their
	// requests.
	httpcaddyfile.RegisterHandlerDirective("asset_presign", parseAssetPresign)
	httpcaddyfile.RegisterDirectiveOrder("asset_presign", httpcaddyfile.Before, "reverse_proxy")
	httpcaddyfile.RegisterHandlerDirective("asset_serve", parseAssetServe)
	httpcaddyfile.RegisterDirectiveOrder("asset_serve", httpcaddyfile.Before, "reverse_proxy")

	// The status page answers on its own too. After the authentication
	// directives (basic_auth, forward_auth) like every content handler,
	// and before reverse_proxy, so that a matcher on the page's path in a
	// proxied site is enough.
	httpcaddyfile.RegisterHandlerDirective("lb_dashboard", parseDashboard)
	httpcaddyfile.RegisterDirectiveOrder("lb_dashboard", httpcaddyfile.Before, "reverse_proxy")
}

// parseSessionStore parses one store declaration; repeats add stores:
//
//	session_store <name> <memory|redis|memcached> [<args...>] [{
//		...backend options...
//	}]
func parseSessionStore(d *caddyfile.Dispenser, existingVal any) (any, error) {
	return parseNamedStore(d, existingVal, "session_store", "memory|redis|memcached")
}

// parseAssetStore parses one object store declaration; repeats add stores:
//
//	asset_store <name> s3 {
//		bucket <bucket>
//		...
//	}
//	asset_store <name> file <dir> [{
//		public_url <base url>
//	}]
func parseAssetStore(d *caddyfile.Dispenser, existingVal any) (any, error) {
	return parseNamedStore(d, existingVal, "asset_store", "s3|file")
}

// parseShipLogs parses one file shipper; repeats add shippers:
//
//	ship_logs {
//		store <asset_store name>
//		files <glob>...
//		...
//	}
func parseShipLogs(d *caddyfile.Dispenser, existingVal any) (any, error) {
	var app logship.ShipLogs
	if existingVal != nil {
		prev, ok := existingVal.(httpcaddyfile.App)
		if !ok {
			return nil, d.Errf("existing ship_logs value of unexpected type %T", existingVal)
		}
		if err := json.Unmarshal(prev.Value, &app); err != nil {
			return nil, d.Errf("merging ship_logs options: %v", err)
		}
	}
	s := new(logship.FileShipper)
	if err := s.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	app.Shippers = append(app.Shippers, s)
	return httpcaddyfile.App{Name: "ship_logs", Value: caddyconfig.JSON(app, nil)}, nil
}

// namedStores is the JSON shape of both store apps: backend modules by
// name in the "<option>.backends" namespace.
type namedStores struct {
	StoresRaw map[string]json.RawMessage `json:"stores,omitempty"`
}

// parseNamedStore adds one `<option> <name> <backend> ...` declaration to
// the app of the same name, merging with earlier declarations.
func parseNamedStore(d *caddyfile.Dispenser, existingVal any, option, backends string) (any, error) {
	app := namedStores{StoresRaw: map[string]json.RawMessage{}}
	if existingVal != nil {
		prev, ok := existingVal.(httpcaddyfile.App)
		if !ok {
			return nil, d.Errf("existing %s value of unexpected type %T", option, existingVal)
		}
		if err := json.Unmarshal(prev.Value, &app); err != nil {
			return nil, d.Errf("merging %s options: %v", option, err)
		}
	}
	d.Next() // option name
	if !d.NextArg() {
		return nil, d.Errf("%s needs a name and a backend: %s <name> <%s>", option, option, backends)
	}
	name := d.Val()
	if !d.NextArg() {
		return nil, d.Errf("%s %s needs a backend: %s", option, name, backends)
	}
	backend := d.Val()
	if _, dup := app.StoresRaw[name]; dup {
		return nil, d.Errf("%s %s is declared twice", option, name)
	}
	unm, err := caddyfile.UnmarshalModule(d, option+".backends."+backend)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", option, name, err)
	}
	app.StoresRaw[name] = caddyconfig.JSONModuleObject(unm, "backend", backend, nil)
	return httpcaddyfile.App{Name: option, Value: caddyconfig.JSON(app, nil)}, nil
}

func parseForwarded(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	f := new(forwarded.Handler)
	if err := f.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return f, nil
}

func parseAssetOffload(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	o := new(assetcdn.Offload)
	if err := o.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return o, nil
}

func parseStickyLearn(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	l := new(affinity.Learn)
	if err := l.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return l, nil
}

func parseAssetURLs(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	u := new(assetcdn.URLs)
	if err := u.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return u, nil
}

func parseAssetPresign(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(assetcdn.Presign)
	if err := p.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return p, nil
}

func parseDashboard(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := new(dashboard.Dashboard)
	if err := d.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return d, nil
}

func parseAssetServe(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(assetcdn.Serve)
	if err := s.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return s, nil
}
