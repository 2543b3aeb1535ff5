// Package caddylb is caddy-lb: Caddy modules that make Caddy the load
// balancer a web application needs once it runs on more than one server.
// Importing this package (xcaddy build --with github.com/caddylb/caddylb)
// brings every module and Caddyfile directive:
//
//   - sessionstore: the session_store app (memory, redis, memcached)
//   - assetcdn: the asset_store app (s3, file), asset_offload,
//     asset_serve, the asset_url template function, `caddy assets`
//   - lbmodule/affinity: lb_policy sticky and the sticky_learn handler
//   - lbmodule/forwarded: the forwarded handler (trusted-proxy headers)
//   - lbmodule/upstreamtls: transport reencrypt (verified TLS to upstreams)
//     and the caddy lb-cert command
//   - lbmodule/lbadmin: the /lb/ admin API
//   - logship: the s3 log writer (log { output s3 }), ships logs to an asset store
//   - caddyfile: directive and global option registration
package caddylb

import (
	_ "github.com/caddylb/caddylb/assetcdn"
	_ "github.com/caddylb/caddylb/caddyfile"
	_ "github.com/caddylb/caddylb/lbmodule/affinity"
	_ "github.com/caddylb/caddylb/lbmodule/forwarded"
	_ "github.com/caddylb/caddylb/lbmodule/lbadmin"
	_ "github.com/caddylb/caddylb/lbmodule/upstreamtls"
	_ "github.com/caddylb/caddylb/logship"
	_ "github.com/caddylb/caddylb/sessionstore"
)
