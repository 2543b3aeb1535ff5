// Command caddy is the caddy-lb build of Caddy: stock Caddy with the standard
// modules plus every caddy-lb module. Build it with `go build -o bin/caddy ./xcaddy`.
// See README.md (Building).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddylb/caddylb"
)

func main() {
	caddycmd.Main()
}
