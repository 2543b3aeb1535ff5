#!/usr/bin/env bash
# Regenerates xcaddy/default.pgo, the CPU profile `go build ./xcaddy`
# optimises caddy-lb's binary with (profile-guided optimisation; Go uses
# a default.pgo in the main package's folder on its own): profiles of
# the caddy-lb stack under the whole-stack benchmark's load
# (integration/bench/stack.sh: lb_memory, lb_redis and lb_offload,
# PROFILE_SECONDS (30) each), merged. Run it after a change to the hot
# path, rebuild, and weigh the result with
#   PLAIN=<a build with -pgo=off> VARIANTS="lb_memory lb_plain" integration/bench/stack.sh
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend STOCK=bin/caddy-stock integration/bench/pgo.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GO=${GO:-go}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
unset CALLGRIND SYSCALLS # stack.sh's counting modes take no profile
ROUNDS=0 VARIANTS="lb_memory lb_redis lb_offload" PROFILE="$out/p" PROFILE_SECONDS=${PROFILE_SECONDS:-30} \
	"$root/integration/bench/stack.sh"
profiles=()
for v in lb_memory lb_redis lb_offload; do
	[ -s "$out/p-$v.pprof" ] || { echo "pgo.sh: no profile of $v; xcaddy/default.pgo is left as it was" >&2; exit 1; }
	profiles+=("$out/p-$v.pprof")
done
# Written beside and moved in place: a failed merge leaves the old profile.
"$GO" tool pprof -proto "${profiles[@]}" >"$out/default.pgo"
mv "$out/default.pgo" "$root/xcaddy/default.pgo"
echo "wrote xcaddy/default.pgo ($(wc -c <"$root/xcaddy/default.pgo") bytes) from ${#profiles[@]} profiles"
