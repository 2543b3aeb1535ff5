#!/usr/bin/env bash
# Runtime and transport settings for a caddy-lb node (docs/tuning.md,
# BENCHMARKS.md "Production settings"): lb_memory's stack (forwarded,
# sticky_learn + lb_policy sticky on PHPSESSID, memory store, access log
# to output s3, metrics) served by one process per setting, each pinned
# to the same core with GOMAXPROCS=1, in front of the same three demo
# backends, measured in interleaved rounds against the defaults:
#
#   gogc100     GOGC=100: Go's own collector target (also what GOGC in
#               the environment gets: caddy-lb then leaves it alone)
#   default     nothing set: caddy-lb's target, the live heap plus at
#               least 32 MiB (internal/gctune); Caddy sets GOMEMLIMIT to
#               90% of the memory it may use
#   gogc200     GOGC=200
#   gogc400     GOGC=400
#   gcoff_lim   GOGC=off GOMEMLIMIT=256MiB: collect only near the limit
#   idle128     keepalive_idle_conns_per_host 128 (Caddy's default: 32)
#   buf16k      read_buffer 16KiB, write_buffer 16KiB (default: 4 KiB)
#   rp_nolog    reverse_proxy's own logger excluded from the default log
#               (`log default { exclude http.handlers.reverse_proxy }`):
#               reverse_proxy then stops encoding every request it sends
#               for a debug line that is not written
#
# idle128, buf16k and rp_nolog run with GOGC=100 too: each row changes one
# thing from gogc100.
#
# Each variant's table row: requests/s, ratio to gogc100 with quartiles,
# p99, CPU µs per request, and RSS at the end. Run at CONNS=32 (the
# stack's load) and CONNS=256 (more clients than the idle pool).
#
# CALLGRIND=N counts instead the instructions per request of each
# variant's process (under callgrind, lib.sh) over N requests one after
# another on one kept-alive connection, in two rounds, after every one has
# been idle for 15 s.
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend integration/bench/tuning.sh
ROUNDS=${ROUNDS:-9}
source "$(dirname "$0")/lib.sh"

start_backends 3
secret=bench-secret-0123456789abcdef
variants=(gogc100 default gogc200 gogc400 gcoff_lim idle128 buf16k rp_nolog)
declare -A port url hdr pid env transport globals
env[gogc100]="GOGC=100"
env[rp_nolog]="GOGC=100"
globals[rp_nolog]="log default {
		exclude http.handlers.reverse_proxy
	}"
env[gogc200]="GOGC=200"
env[idle128]="GOGC=100"
env[buf16k]="GOGC=100"
env[gogc400]="GOGC=400"
env[gcoff_lim]="GOGC=off GOMEMLIMIT=256MiB"
transport[idle128]="transport http {
			keepalive_idle_conns_per_host 128
		}"
transport[buf16k]="transport http {
			read_buffer 16KiB
			write_buffer 16KiB
		}"
for v in "${variants[@]}"; do
	port[$v]=$(free_port)
	url[$v]="http://127.0.0.1:${port[$v]}/"
	a=$(free_port)
	cat >"$work/$v.Caddyfile" <<CADDY
{
	admin 127.0.0.1:$a
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	storage file_system $work/$v-storage
	metrics
	session_store mem memory
	asset_store logs file $work/$v-shipped
	${globals[$v]:-}
}
:${port[$v]} {
	forwarded {
		trusted_proxies private_ranges
	}
	log {
		output s3 logs {
			prefix $v
			spool_dir $work/$v-spool
		}
	}
	sticky_learn
	reverse_proxy $upstreams {
		lb_policy sticky {
			app_cookie PHPSESSID
			store mem
		}
		${transport[$v]:-}
	}
}
CADDY
	# shellcheck disable=SC2086 # env[] is a list of NAME=value words
	env -u GOGC -u GOMEMLIMIT GOMAXPROCS=1 ${env[$v]:-} ${cg:+GODEBUG=asyncpreemptoff=1} $pin_lb ${cg:+$cg --callgrind-out-file=$work/$v.cg} "$CADDY" run --config "$work/$v.Caddyfile" --adapter caddyfile >"$work/$v.log" 2>&1 &
	pid[$v]=$!
	pids+=($!)
done
for v in "${variants[@]}"; do wait_port "${port[$v]}"; done
for v in "${variants[@]}"; do use_cookie "$v" "$(set_cookie "${url[$v]}login" "" PHPSESSID)"; done

if [ -n "$CALLGRIND" ]; then
	command -v callgrind_control >/dev/null || { echo "missing valgrind (run make deps)" >&2; exit 1; }
	declare -A ipr
	sleep 15 # what every Caddy does once after its start is over
	for round in 1 2; do
		for v in "${variants[@]}"; do
			ipr[$v]+="$(per_request "${pid[$v]}" "$work/$v.cg" "$v" "$round") "
			callgrind_control -i off "${pid[$v]}" >/dev/null 2>&1
		done
	done
	echo "| variant | instructions per request | second run | relative to gogc100 |"
	echo "|---|---|---|---|"
	read -r b1 b2 <<<"${ipr[gogc100]}"
	for v in "${variants[@]}"; do
		read -r a1 a2 <<<"${ipr[$v]}"
		printf '| %s | %s | %s | %.3f |\n' "$v" "$a1" "$a2" "$(awk -v a=$((a1 + a2)) -v b=$((b1 + b2)) 'BEGIN{print a/b}')"
	done
	echo
	echo "valgrind --tool=callgrind, GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1, one process per variant, $CALLGRIND requests one after another on one kept-alive connection after 200 of warm-up, two rounds, $(date -u +%Y-%m-%d)."
	exit 0
fi

# cpu_us: the CPU microseconds the measured variant's process has used
# (run_rounds calls it with $v set to the variant it measures).
cpu_us() { awk -v t="$(cpu_ticks "${pid[$v]}")" -v hz="$hz" 'BEGIN{printf "%.0f", t / hz * 1e6}'; }
extra_counter=cpu_us
extra_title="CPU µs per request"

for c in ${TUNING_CONNS:-32 256}; do
	CONNS=$c
	echo "### wrk -c$c"
	echo
	run_rounds "${variants[@]}"
	echo
	printf 'RSS at the end (MiB):'
	for v in "${variants[@]}"; do printf ' %s %s' "$v" "$(rss "${pid[$v]}")"; done
	echo
	echo
done
