# Shared by the wrk load scripts (sticky.sh, forwarded.sh): one caddy-lb
# process serves every variant on its own loopback port in front of the
# same demo backends, and wrk measures the variants in interleaved rounds,
# in a rotating order, so that drift hits all alike. Each variant's ratio
# is taken against the baseline run of the same round and the median of
# those paired ratios is reported with its quartiles (the noise on a small
# VM is several percent). With two or more cores, Caddy is pinned to the
# last core and everything else (wrk, backends, Redis) to the others, so
# the load balancer's CPU is what limits throughput.
#
# Env: ROUNDS (15), DURATION (3s), CONNS (32), THREADS (1).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CADDY=${CADDY:-$root/bin/caddy}
BACKEND=${BACKEND:-$root/bin/demo-backend}
ROUNDS=${ROUNDS:-15}
DURATION=${DURATION:-3s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
for cmd in wrk curl "$CADDY" "$BACKEND"; do
	command -v "$cmd" >/dev/null || { echo "missing $cmd (run make deps build)" >&2; exit 1; }
done

pin_lb="" pin_rest=""
cores=$(nproc)
if [ "$cores" -ge 2 ] && command -v taskset >/dev/null; then
	pin_lb="taskset -c $((cores - 1))"
	pin_rest="taskset -c 0-$((cores - 2))"
fi

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# free_port prints a free loopback port below the ephemeral range.
used=" "
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 10000))
		[[ $used == *" $p "* ]] && continue
		if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
			used+="$p "
			echo "$p"
			return
		fi
	done
}

wait_port() {
	local tries=100
	[ -z "$CALLGRIND" ] || tries=1200 # under callgrind a Caddy takes many seconds to start
	for _ in $(seq "$tries"); do
		(exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listens on $1" >&2
	exit 1
}

# start_backends N sets $upstreams to the addresses of N demo backends.
start_backends() {
	upstreams=""
	local i port
	for i in $(seq "$1"); do
		port=$(free_port)
		$pin_rest "$BACKEND" -listen "127.0.0.1:$port" -name "b$i" >"$work/b$i.log" 2>&1 &
		pids+=($!)
		upstreams+="127.0.0.1:$port "
	done
	for u in $upstreams; do wait_port "${u##*:}"; done
}

# CALLGRIND=N, in the scripts that support it, counts instructions per
# request under valgrind's callgrind instead of timing wrk. cg is then the
# command prefix: instrumentation off until a count starts, so start-up
# runs at valgrind's faster pace.
CALLGRIND=${CALLGRIND:-}
cg=""
[ -z "$CALLGRIND" ] || cg="valgrind --tool=callgrind --instr-atstart=no --dump-instr=no --compress-strings=no"

# start_caddy FILE runs caddy-lb with that Caddyfile, pinned; sets $caddy_pid.
start_caddy() {
	env ${cg:+GODEBUG=asyncpreemptoff=1} $pin_lb ${cg:+$cg --callgrind-out-file=$work/caddy.cg} "$CADDY" run --config "$1" --adapter caddyfile >"$work/caddy.log" 2>&1 &
	caddy_pid=$!
	pids+=($caddy_pid)
}

# curl_n URL HEADER N: N requests to URL, one after another on one
# kept-alive connection, each with the request header HEADER (may be empty).
curl_n() {
	local f="$work/curl-$RANDOM"
	: >"$f"
	for _ in $(seq "$3"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$1" >>"$f"; done
	$pin_rest curl -s -f ${2:+-H "$2"} -K "$f" || { echo "a request to $1 failed" >&2; exit 1; }
	rm -f "$f"
}

# counted PID OUT CMD...: the instructions the process PID, running under
# callgrind with --callgrind-out-file=OUT, ran while CMD ran: from a
# zeroed counter to a dump (the newest dump's summary line).
counted() {
	local p=$1 out=$2 before after
	shift 2
	before=$(find "$(dirname "$out")" -maxdepth 1 -name "$(basename "$out").*" | wc -l)
	callgrind_control -z "$p" >/dev/null 2>&1 || { echo "callgrind_control -z $p failed" >&2; exit 1; }
	"$@"
	callgrind_control -d "$p" >/dev/null 2>&1 || { echo "callgrind_control -d $p failed" >&2; exit 1; }
	after=$((before + 1))
	# Dumps are OUT.1, OUT.2, ...: this one must be the next number.
	[ -s "$out.$after" ] || { echo "no callgrind dump $out.$after" >&2; exit 1; }
	awk '/^summary:/ {print $2}' "$out.$after"
}

# per_request PID OUT V ROUND: the instructions per request of the process
# PID (under callgrind, OUT its --callgrind-out-file) over $CALLGRIND
# requests to url[V] with hdr[V], one after another on one connection,
# after 200 of warm-up in round 1. It turns instrumentation on and leaves
# it on, for a caller that counts more of the same variant; the caller
# turns it off.
per_request() {
	callgrind_control -i on "$1" >/dev/null 2>&1
	[ "$4" != 1 ] || curl_n "${url[$3]}" "${hdr[$3]}" 200 # warm-up
	echo $(($(counted "$1" "$2" curl_n "${url[$3]}" "${hdr[$3]}" "$CALLGRIND") / CALLGRIND))
}

# global_options prints the global-options lines every suite's Caddyfile
# starts with: a private admin port, loopback only, no HTTPS, state in $work.
admin=$(free_port)
global_options() {
	printf '\tadmin 127.0.0.1:%s\n\tdefault_bind 127.0.0.1\n\tauto_https off\n\tpersist_config off\n\tstorage file_system %s\n' "$admin" "$work/storage"
}

set_cookie() { # URL [COOKIE] NAME: the NAME=value a response sets
	curl -s -D - -o /dev/null ${2:+-H "Cookie: $2"} "$1" | tr -d '\r' | sed -n "s/^[Ss]et-[Cc]ookie: \($3=[^;]*\).*/\1/p" | head -1
}

# use_cookie VARIANT COOKIE: sets hdr[VARIANT] to send COOKIE and checks
# that two requests with it reach the same backend.
use_cookie() {
	local v=$1 c=$2 b1 b2
	[ -n "$c" ] || { echo "no cookie for $v" >&2; cat "$work/caddy.log" >&2; exit 1; }
	hdr[$v]="Cookie: $c"
	b1=$(curl -s -o /dev/null -w '%header{x-backend}' -H "${hdr[$v]}" "${url[$v]}")
	b2=$(curl -s -o /dev/null -w '%header{x-backend}' -H "${hdr[$v]}" "${url[$v]}")
	[ "$b1" = "$b2" ] || { echo "$v is not sticky: $b1 then $b2" >&2; exit 1; }
}

# A process's CPU and memory, from /proc: cpu_ticks PID (user + system,
# in clock ticks of hz a second), sys_ticks PID (system alone), rss PID
# (resident MiB).
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sys_ticks() { awk '{print $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
quartiles() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{printf "%.3f-%.3f", a[int((NR+3)/4)], a[int((3*NR+3)/4)]}'; }
to_ms() { # wrk latency like 1.23ms, 456.00us, 1.02s
	awk -v v="$1" 'BEGIN{ if (v ~ /us$/) printf "%.2f", v/1000; else if (v ~ /ms$/) printf "%.2f", v+0; else if (v ~ /s$/) printf "%.2f", v*1000; else print v }'
}

# extra_counter, when set by a suite, names a function printing a counter
# (e.g. Redis commands) whose increase per request goes in the last column.
extra_counter=""
extra_title=""

# run_rounds BASELINE VARIANT...: needs, per variant, url[$v] and hdr[$v]
# (one request header for wrk, may be empty). Prints the Markdown table.
run_rounds() {
	local base=$1 v r l n_req before=0 out errs i
	local variants=("$@")
	local n=${#variants[@]}
	declare -gA rps=() p99=() ratio=() extra=() requests=()
	wrk_args() { if [ -n "${hdr[$1]}" ]; then echo -H; echo "${hdr[$1]}"; fi; }
	for v in "${variants[@]}"; do # warm-up
		mapfile -t h < <(wrk_args "$v")
		$pin_rest wrk -t"$THREADS" -c"$CONNS" -d2s "${h[@]}" "${url[$v]}" >/dev/null
	done
	for round in $(seq "$ROUNDS"); do
		declare -A round_rps=()
		for i in $(seq 0 $((n - 1))); do
			v=${variants[$(((i + round) % n))]}
			mapfile -t h < <(wrk_args "$v")
			[ -z "$extra_counter" ] || before=$($extra_counter)
			out=$($pin_rest wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${h[@]}" "${url[$v]}")
			errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
			[ -z "$errs" ] || { echo "$v round $round: $errs" >&2; exit 1; }
			r=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
			l=$(awk '$1 == "99%" {print $2}' <<<"$out")
			n_req=$(awk '/requests in/ {print $1}' <<<"$out")
			[ -z "$extra_counter" ] || extra[$v]=$(( ${extra[$v]:-0} + $($extra_counter) - before ))
			requests[$v]=$(( ${requests[$v]:-0} + n_req ))
			rps[$v]+="$r "
			p99[$v]+="$(to_ms "$l") "
			round_rps[$v]=$r
			echo "round $round $v: $r req/s, p99 $l" >&2
		done
		for v in "${variants[@]}"; do
			ratio[$v]+="$(awk -v a="${round_rps[$v]}" -v b="${round_rps[$base]}" 'BEGIN{print a/b}') "
		done
	done
	local head="| variant | requests/s (median of $ROUNDS) | ratio to $base (median of paired rounds) | ratio quartiles | p99 ms (median) |"
	local rule="|---|---|---|---|---|"
	if [ -n "$extra_counter" ]; then head+=" $extra_title |"; rule+="---|"; fi
	echo "$head"
	echo "$rule"
	for v in "${variants[@]}"; do
		printf '| %s | %.0f | %.3f | %s | %s |' "$v" "$(median "${rps[$v]}")" "$(median "${ratio[$v]}")" "$(quartiles "${ratio[$v]}")" "$(median "${p99[$v]}")"
		[ -z "$extra_counter" ] || printf ' %s |' "$(awk -v c="${extra[$v]}" -v n="${requests[$v]}" 'BEGIN{printf "%.4f", c/n}')"
		echo
	done
	echo
	echo "wrk -t$THREADS -c$CONNS -d$DURATION x $ROUNDS rounds (rotating order, after a warm-up), $cores cores${pin_lb:+ (Caddy pinned to one core)}, $(date -u +%Y-%m-%d)."
}
