#!/usr/bin/env bash
# Runs the caddy-lb demo: three demo backends (b1..b3, HTTP on
# 127.0.0.1:9001-9003 and HTTPS on 127.0.0.1:9441-9443) behind bin/caddy
# with integration/demo/Caddyfile, showing every capability on embedded
# defaults. `make run` builds the binaries and calls this; Ctrl-C (or
# SIGTERM) stops everything. It needs nothing but the two binaries and
# bash 4.3 or later (for wait -n): no curl, no openssl, no redis, no S3.
#
# Everything it writes goes under ./var of the working directory (the
# Caddyfile's paths are relative to it); its own files are found from this
# script's location, so it runs from any directory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
demo="$root/integration/demo"
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
# Caddy's own files (instance id, anything not configured to ./var) stay
# in ./var too, not in the user's home directory.
mkdir -p var
export XDG_DATA_HOME="$PWD/var/data" XDG_CONFIG_HOME="$PWD/var/config"
storage=./var/caddy   # the Caddyfile's `storage file_system`
tlsdir=./var/backend-tls

pids=()
cleanup() {
	trap - EXIT INT TERM
	for pid in ${pids[@]+"${pids[@]}"}; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# http_get prints the response (head and body) of GET http://127.0.0.1:<port><path>
# using bash's /dev/tcp, so waiting needs no curl. It fails if nothing listens,
# and gives up after 3 s where coreutils' timeout exists (not on stock macOS).
http_get() {
	local port=$1 path=$2 bound=()
	if command -v timeout >/dev/null; then
		bound=(timeout 3)
	fi
	${bound[@]+"${bound[@]}"} bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET %s HTTP/1.0\r\nHost: localhost:%s\r\n\r\n" "$2" "$1" >&3
		cat <&3' _ "$port" "$path" 2>/dev/null
}

# wait_for runs its arguments until they succeed, for at most 30 s, and
# gives up early if Caddy or a backend already exited.
wait_for() {
	local what=$1
	shift
	for _ in $(seq 150); do
		if "$@"; then
			return 0
		fi
		for pid in ${pids[@]+"${pids[@]}"}; do
			if ! kill -0 "$pid" 2>/dev/null; then
				echo "run.sh: a demo process exited while waiting for $what" >&2
				exit 1
			fi
		done
		sleep 0.2
	done
	echo "run.sh: gave up waiting for $what after 30 s" >&2
	exit 1
}

# 1. The front-end build for asset_url: fingerprinted copies of
#    integration/demo/static and a manifest, in the file store, before
#    Caddy reads the manifest. A second run uploads nothing.
"$caddy" assets sync --config "$demo/Caddyfile" --store media --prefix static/ "$demo/static" >/dev/null

# 2. Caddy. Its local CA (for `tls internal` and `transport reencrypt`) is
#    created in ./var/caddy as it starts; the HTTPS backends are not up yet,
#    so health checks keep :8443 from sending them anything until they are.
"$caddy" run --config "$demo/Caddyfile" --adapter caddyfile &
pids+=($!)
ca_ready() { [[ -s $storage/pki/authorities/local/root.crt && -s $storage/pki/authorities/local/root.key ]]; }
wait_for "Caddy's local CA in $storage" ca_ready
wait_for "Caddy's admin endpoint on localhost:2019" http_get 2019 /config/ >/dev/null

# 3. The backends' certificate from that CA, naming 127.0.0.1 (the
#    upstreams' address, verified as an IP SAN). --force renews it on
#    every start; a read racing the CA's first write is retried.
lb_cert() { "$caddy" lb-cert --storage-dir "$storage" --out "$tlsdir" --san 127.0.0.1 --san localhost --force >/dev/null; }
wait_for "caddy lb-cert" lb_cert

# 4. The backends: plain HTTP for :8080 and :8081, HTTPS requiring the load
#    balancer's client certificate for :8443. Their logs also go to
#    ./var/backends/b<n>.log, which the Caddyfile's ship_logs ships as a
#    web server's application logs would be.
mkdir -p var/backends
for i in 1 2 3; do
	"$backend" -listen "127.0.0.1:900$i" -name "b$i" \
		-tls-listen "127.0.0.1:944$i" -tls-cert "$tlsdir/chain.pem" -tls-key "$tlsdir/key.pem" \
		-tls-client-ca "$tlsdir/ca.pem" 2> >(tee -a "var/backends/b$i.log" >&2) &
	pids+=($!)
done

# 5. Ready once Caddy's health checks see all six upstreams: the first
#    URL a person opens then works.
all_healthy() {
	local out
	out="$(http_get 2019 /lb/upstreams)" || return 1
	[[ $out == *'"healthy":true'* && $out != *'"healthy":false'* ]]
}
wait_for "the backends to pass Caddy's health checks" all_healthy

cat <<MSG

caddy-lb demo: backends b1..b3 (HTTP on 127.0.0.1:9001-9003, HTTPS on 9441-9443), Caddy on
https://localhost:8443, :8080 and :8081, admin on localhost:2019. Everything is written to ./var.
The HTTPS certificate is from Caddy's local CA, not installed in any trust store: your browser warns,
or use curl --cacert $storage/pki/authorities/local/root.crt.

  [https]       https://localhost:8443/                      HTTPS with tls internal
  [forwarded]   https://localhost:8443/headers               what the backend was told: X-Forwarded-For your IP, -Proto https, -Port 8443; spoofed ones dropped
  [sticky]      https://localhost:8443/whoami                a signed LB cookie keeps you on one backend: "backend" stays the same
  [reencrypt]   https://localhost:8443/tls                   the backend was reached over TLS (lb-cert certificate) and saw caddy-lb's client certificate
  [app-cookie]  http://localhost:8080/login                  a session from one backend, keyed by its own PHPSESSID cookie
  [app-cookie]  http://localhost:8080/whoami                 then this: "known": true means you stayed on the backend that holds it
  [lb-cookie]   http://localhost:8081/whoami                 sticky on a signed LB cookie over plain HTTP
  [upload]      curl -F photo=@some.png http://localhost:8080/upload stored in ./var/assets; the backend gets a signed reference ("verified": true)
  [asset_serve] http://localhost:8080/media/<key>            the uploaded file back, <key> from the upload's answer
  [asset_url]   http://localhost:8080/page                   a template page whose CSS and logo URLs asset_url made from the synced manifest
  [presign]     http://localhost:8080/uploads/presign        POST {"filename","content_type","size"}: 501 here, presigned uploads need an S3 store
  [logs]        http://localhost:8080/shipped-logs/demo/     the access log of :8080, shipped as gzipped files every 10 s (./var/logs/demo)
  [lb-logs]     $caddy lb-logs search --config $demo/Caddyfile --store logs --prefix demo --since 1h --format text   that access log and the backends' logs (ship_logs), merged in time order
  [dashboard]   http://localhost:8080/lb-status/             the status page: upstreams, sessions, stores, fleet; Drain / Undrain buttons
  [admin]       http://localhost:2019/lb/upstreams           the admin API: upstreams, health, bound sessions
Ctrl-C stops everything.

MSG

# Stop as soon as any process ends (Ctrl-C, or a port already in use), and
# take the others down with it.
status=0
wait -n || status=$?
echo "run.sh: stopping the demo" >&2
exit "$status"
