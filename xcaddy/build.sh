#!/usr/bin/env bash
# Builds caddy-lb with the real xcaddy tool, the way users build it:
#
#	xcaddy build v2.11.9 --with github.com/caddylb/caddylb=<this checkout>
#
# It proves the root package brings every module in. `make build` (plain
# go build ./xcaddy) is the quicker build for development.
#
# OUT sets the output file (default bin/caddy-xcaddy, relative to the repo
# root). Installs xcaddy v0.4.5 into $(go env GOPATH)/bin when missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

caddy_version=v2.11.9
xcaddy_version=v0.4.5
# The version xcaddy `go get`s for our module. It is replaced by this
# checkout, so any version will do; naming one keeps go get from asking
# the network for the latest, which a private module does not have.
local_version=v0.0.0-00010101000000-000000000000
out="${OUT:-bin/caddy-xcaddy}"
case "$out" in
/*) ;;
*) out="$root/$out" ;;
esac
mkdir -p "$(dirname "$out")"

export PATH="$(go env GOPATH)/bin:$PATH"
# Our module is not on the public module proxy or checksum database; xcaddy
# replaces it with this checkout, and Go must not try to look it up.
export GOPRIVATE="${GOPRIVATE:+$GOPRIVATE,}github.com/caddylb"
# xcaddy builds in a temporary module outside any repository: no VCS stamp.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"

if ! command -v xcaddy >/dev/null 2>&1; then
	echo "build.sh: installing xcaddy $xcaddy_version" >&2
	go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$xcaddy_version"
fi

# Profile-guided optimisation: Go uses a default.pgo in the main package's
# folder on its own, but xcaddy writes its own main package, where there
# is none; hand it caddy-lb's (docs/tuning.md, "The PGO build"). Any
# XCADDY_GO_BUILD_FLAGS replaces xcaddy's own build flags, so they are
# given again (xcaddy v0.4.5's builder.go).
xcaddy_flags="-ldflags '-w -s' -trimpath -tags nobadger,nomysql,nopgx"
export XCADDY_GO_BUILD_FLAGS="${XCADDY_GO_BUILD_FLAGS:-$xcaddy_flags} -pgo='$root/xcaddy/default.pgo'"

xcaddy build "$caddy_version" \
	--output "$out" \
	--with "github.com/caddylb/caddylb@$local_version=$root"
