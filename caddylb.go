// Package caddylb is caddy-lb: Caddy modules that make Caddy the load
// balancer a web application needs once it runs on more than one server.
// Importing this package (xcaddy build --with github.com/caddylb/caddylb)
// brings every module and Caddyfile directive, and the garbage collector's
// target for a load balancer (internal/gctune; GOGC in the environment
// turns it off).
//
// See README.md, and docs/architecture.md for the layout.
package caddylb

import (
	_ "github.com/caddylb/caddylb/assetcdn"
	_ "github.com/caddylb/caddylb/assetcdn/objectstore"
	_ "github.com/caddylb/caddylb/caddyfile"
	_ "github.com/caddylb/caddylb/lbmodule/affinity"
	_ "github.com/caddylb/caddylb/lbmodule/dashboard"
	_ "github.com/caddylb/caddylb/lbmodule/forwarded"
	_ "github.com/caddylb/caddylb/lbmodule/l4sticky"
	_ "github.com/caddylb/caddylb/lbmodule/lbadmin"
	_ "github.com/caddylb/caddylb/lbmodule/upstreamtls"
	_ "github.com/caddylb/caddylb/logship"
	_ "github.com/caddylb/caddylb/sessionstore"

	// caddy-l4: the layer4 app and listener wrapper, for TLS pass-through
	// by SNI beside the HTTP sites and PROXY protocol (docs/passthrough.md).
	_ "github.com/mholt/caddy-l4"

	"github.com/caddylb/caddylb/internal/gctune"
)

// The collector is tuned from the binary's first moment: a program that
// imports caddy-lb is a load balancer (docs/tuning.md, "The garbage
// collector").
func init() { gctune.Start() }
