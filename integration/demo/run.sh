#!/usr/bin/env bash
# Runs the caddy-lb demo: three demo backends (b1..b3 on 127.0.0.1:9001-9003)
# behind bin/caddy with integration/demo/Caddyfile. `make run` builds the
# binaries and calls this; Ctrl-C stops everything.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
caddy="${CADDY:-$root/bin/caddy}"
backend="${BACKEND:-$root/bin/demo-backend}"
for bin in "$caddy" "$backend"; do
	if [[ ! -x "$bin" ]]; then
		echo "run.sh: $bin is missing; run \`make run\`, which builds it first" >&2
		exit 1
	fi
done

# asset_offload signs file references with this secret and the demo
# backends verify them with it.
export UPLOAD_SIGNING_SECRET="${UPLOAD_SIGNING_SECRET:-demo-only-upload-secret-change-me}"

pids=()
cleanup() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for i in 1 2 3; do
	"$backend" -listen "127.0.0.1:900$i" -name "b$i" &
	pids+=($!)
done
"$caddy" run --config "$root/integration/demo/Caddyfile" --adapter caddyfile &
pids+=($!)

cat <<MSG

caddy-lb demo: backends b1..b3 on 127.0.0.1:9001-9003, Caddy on :8080, admin on localhost:2019.
  open http://localhost:8080/login     to get a session from one backend
  then http://localhost:8080/whoami    "known": true means you stayed on that backend
  curl -F photo=@some.png http://localhost:8080/upload   stores the file in ./var/assets, the backend gets a signed reference
  ./var/logs/demo/...                  the access log of :8080, shipped every 10 s
Ctrl-C stops everything.

MSG

# Stop as soon as any process ends (Ctrl-C, or a port already in use), and
# take the others down with it.
status=0
wait -n || status=$?
echo "run.sh: stopping the demo" >&2
exit "$status"
