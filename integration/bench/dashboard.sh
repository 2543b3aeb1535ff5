#!/usr/bin/env bash
# wrk: the sticky hit path (a returning client's LB cookie, memory store)
# on a caddy-lb with lb_dashboard configured and open in a headless
# Chromium that polls it, against the same config without the dashboard:
# three processes pinned to the same core, measured in interleaved
# rounds. with_dashboard_site_open serves the page on a site of its own
# (an internal port, as docs/dashboard.md sets it up); with_dashboard_
# route_open serves it from a handle_path in the proxied site itself, so
# every proxied request also passes that route's matcher. Before that,
# the CPU the open page costs the idle node: the polls it answers and the
# history it samples.
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend integration/bench/dashboard.sh
source "$(dirname "$0")/lib.sh"
chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { echo "missing chromium (run make deps)" >&2; exit 1; }

start_backends 3
secret=bench-secret-0123456789abcdef
declare -A port url hdr
variants=(without_dashboard with_dashboard_site_open with_dashboard_route_open)
for v in "${variants[@]}"; do port[$v]=$(free_port); url[$v]="http://127.0.0.1:${port[$v]}/"; done
dash_port=$(free_port)

site() { # PORT [DASHBOARD-LINES]
	cat <<CADDY
:$1 {
$2
	reverse_proxy $upstreams {
		lb_policy sticky {
			secret $secret
		}
	}
}
CADDY
}
dashboard='	handle_path /lb-status/* {
		lb_dashboard {
			actions
		}
	}'
# global NAME: the global options with an admin port and storage of its own.
global() { global_options | sed "s/127.0.0.1:$admin/127.0.0.1:$(free_port)/; s#$work/storage#$work/storage-$1#"; }
{ echo "{"; global a; echo "}"; site "${port[without_dashboard]}" ""; } >"$work/a.Caddyfile"
{ echo "{"; global b; echo "}"; site "${port[with_dashboard_site_open]}" ""; echo ":$dash_port {"; echo "$dashboard"; echo "}"; } >"$work/b.Caddyfile"
{ echo "{"; global c; echo "}"; site "${port[with_dashboard_route_open]}" "$dashboard"; } >"$work/c.Caddyfile"

declare -A pid
for f in a b c; do
	$pin_lb "$CADDY" run --config "$work/$f.Caddyfile" --adapter caddyfile >"$work/caddy-$f.log" 2>&1 &
	pid[$f]=$!
	pids+=(${pid[$f]})
done
for v in "${variants[@]}"; do wait_port "${port[$v]}"; done
wait_port "$dash_port"
page_b="http://127.0.0.1:$dash_port/lb-status/"
page_c="${url[with_dashboard_route_open]}lb-status/"

for v in "${variants[@]}"; do
	use_cookie "$v" "$(set_cookie "${url[$v]}" "$(set_cookie "${url[$v]}" "" lb_affinity)" lb_affinity)"
done

idle_cpu() { # PID SECONDS: CPU ms per second the process used
	local before after
	before=$(cpu_ticks "$1"); sleep "$2"; after=$(cpu_ticks "$1")
	awk -v d=$((after - before)) -v hz="$hz" -v s="$2" 'BEGIN{printf "%.2f", d * 1000 / hz / s}'
}
idle_closed=$(idle_cpu "${pid[b]}" 30)

# The pages, open in a real browser for the whole run (headless Chromium
# opens one page per process); they poll every 2 s. Each Chromium runs in
# a process group of its own, so that all of its processes go at the end.
browsers=()
for page in "$page_b" "$page_c"; do
	setsid $pin_rest "$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
		--user-data-dir="$work/chromium-${#browsers[@]}" --remote-debugging-port=0 "$page" >>"$work/chromium.log" 2>&1 &
	browsers+=($!)
done
trap 'for b in "${browsers[@]}"; do kill -9 -- -"$b" 2>/dev/null || true; done; cleanup' EXIT
polled() { ss -tn state established "( dport = :$1 )" | grep -q 127.0.0.1; }
for _ in $(seq 100); do polled "$dash_port" && polled "${port[with_dashboard_route_open]}" && break; sleep 0.1; done
polled "$dash_port" && polled "${port[with_dashboard_route_open]}" ||
	{ echo "the browser did not open both dashboards" >&2; cat "$work/chromium.log" >&2; exit 1; }
idle_open=$(idle_cpu "${pid[b]}" 30)

# The CPU each process spent per request, in microseconds: what the
# dashboard costs the request path, without the VM's round-to-round swings
# in throughput (steal time is not the process's). run_rounds calls this
# before and after each variant's run, with $v set to the variant.
declare -A pid_of=([without_dashboard]=${pid[a]} [with_dashboard_site_open]=${pid[b]} [with_dashboard_route_open]=${pid[c]})
cpu_us() { awk -v hz="$hz" '{printf "%d", ($14 + $15) * 1000000 / hz}' "/proc/${pid_of[$v]}/stat"; }
extra_counter=cpu_us
extra_title="Caddy CPU us per request"
run_rounds without_dashboard with_dashboard_site_open with_dashboard_route_open
echo
echo "CPU of the node with the dashboard while idle: $idle_closed ms/s with the page closed, $idle_open ms/s with it open in Chromium (30 s each)."
