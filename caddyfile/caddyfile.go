// Package caddyfile registers caddy-lb's Caddyfile surface in one place:
// global options (session_store), handler directives (forwarded,
// sticky_learn) and
// where they sit in Caddy's directive order. The modules themselves parse
// their own blocks (UnmarshalCaddyfile beside each module).
package caddyfile

import (
	"encoding/json"
	"fmt"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddylb/caddylb/lbmodule/affinity"
	"github.com/caddylb/caddylb/lbmodule/forwarded"
	"github.com/caddylb/caddylb/sessionstore"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("session_store", parseSessionStore)

	httpcaddyfile.RegisterHandlerDirective("forwarded", parseForwarded)
	// First of all: every later handler, matcher and log must see the
	// real client and scheme.
	httpcaddyfile.RegisterDirectiveOrder("forwarded", httpcaddyfile.Before, "tracing")

	httpcaddyfile.RegisterHandlerDirective("sticky_learn", parseStickyLearn)
	// It must wrap the response before reverse_proxy writes it.
	httpcaddyfile.RegisterDirectiveOrder("sticky_learn", httpcaddyfile.Before, "reverse_proxy")
}

// parseSessionStore parses one store declaration; repeats add stores:
//
//	session_store <name> <memory|redis|memcached> [<args...>] [{
//		...backend options...
//	}]
func parseSessionStore(d *caddyfile.Dispenser, existingVal any) (any, error) {
	app := sessionstore.App{StoresRaw: map[string]json.RawMessage{}}
	if existingVal != nil {
		prev, ok := existingVal.(httpcaddyfile.App)
		if !ok {
			return nil, d.Errf("existing session_store value of unexpected type %T", existingVal)
		}
		if err := json.Unmarshal(prev.Value, &app); err != nil {
			return nil, d.Errf("merging session_store options: %v", err)
		}
	}
	d.Next() // option name
	if !d.NextArg() {
		return nil, d.Err("session_store needs a name and a backend: session_store <name> <memory|redis|memcached>")
	}
	name := d.Val()
	if !d.NextArg() {
		return nil, d.Errf("session_store %s needs a backend: memory, redis or memcached", name)
	}
	backend := d.Val()
	if _, dup := app.StoresRaw[name]; dup {
		return nil, d.Errf("session_store %s is declared twice", name)
	}
	unm, err := caddyfile.UnmarshalModule(d, "session_store.backends."+backend)
	if err != nil {
		return nil, fmt.Errorf("session_store %s: %w", name, err)
	}
	app.StoresRaw[name] = caddyconfig.JSONModuleObject(unm, "backend", backend, nil)
	return httpcaddyfile.App{Name: "session_store", Value: caddyconfig.JSON(app, nil)}, nil
}

func parseForwarded(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	f := new(forwarded.Handler)
	if err := f.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return f, nil
}

func parseStickyLearn(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	l := new(affinity.Learn)
	if err := l.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return l, nil
}
