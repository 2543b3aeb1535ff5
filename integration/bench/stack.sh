#!/usr/bin/env bash
# The whole stack as users run it, against what they would pick instead,
# in one run (BENCHMARKS.md, "The whole stack"): every system is its own
# process, pinned to the same core (Go ones with GOMAXPROCS=1), in front
# of the same three demo backends; wrk and the backends run on the other
# core. Variants, rotating order, ROUNDS rounds of DURATION each after a
# warm-up, a returning browser's cookie on every request:
#
#   stock        stock Caddy (built from the same Caddy version, no
#                caddy-lb module): trusted_proxies, lb_policy cookie,
#                access log to a file, metrics on
#   lb_memory    caddy-lb: forwarded, sticky_learn + lb_policy sticky on
#                the application's PHPSESSID (memory store), access log to
#                output s3 (a file store), metrics on
#   lb_redis     the same on a Redis store
#   lb_offload   lb_memory with asset_offload on the route (no upload in
#                the request)
#   nginx        Debian's nginx: hash on the cookie, realip,
#                X-Forwarded-*, access log to a file, upstream keep-alive
#   haproxy      Debian's HAProxy: cookie insert, forwardfor, http log
#                to stdout (a file)
#
# For each: requests/s, p50 and p99, CPU per request (the process's
# utime+stime over the round's requests) and RSS at the end; the median
# of the paired ratios to stock with their quartiles.
#
# Env: PLAIN (see lb_plain below), VARIANTS (a subset of the names above;
# stock is always in),
# ROUNDS (9; 0 skips the table), DURATION (3s), CONNS (32), PROFILE
# (a path prefix: also take a CPU profile of each Go system under the
# same load, PROFILE_SECONDS (10) long, as PROFILE-stock.pprof,
# PROFILE-lb_memory.pprof and so on, for `go tool pprof -diff_base`, and
# for xcaddy/default.pgo: integration/bench/pgo.sh).
#
# CALLGRIND=N counts instructions instead of timing wrk (ROUNDS is then
# 0): every system runs under valgrind --tool=callgrind, and for each, the
# instructions its process ran over N requests sent one after another on
# one kept-alive connection, then over CALLGRIND_SECONDS (20) of wrk's
# load (the same CONNS), divided by the requests; in two rounds over all
# systems, after every one has been idle for 15 s. A count depends far
# less on the machine than wrk's rates, which swing by 10% here, but a
# process's work on timers counts per request in proportion to how slowly
# it runs: run nothing else on the pinned core. It does not see cache
# misses, the kernel's part, or how the work spreads over time.
# CALLGRIND_KEEP=DIR keeps the dumps there, for callgrind_annotate. A
# count over a few thousand requests repeats to within about 2%: where a
# garbage collection falls moves it.
# SYSCALLS=N counts instead the system calls per request (strace -c -f),
# over N requests on one connection and over 10 s of wrk, and, for the Go
# ones, the allocations per request (the runtime's counters on the admin
# endpoint's /metrics) over N requests on one connection.
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend STOCK=bin/caddy-stock integration/bench/stack.sh
[ -z "${CALLGRIND:-}" ] || ROUNDS=0
ROUNDS=${ROUNDS:-9}
source "$(dirname "$0")/lib.sh"
STOCK=${STOCK:-$root/bin/caddy-stock}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
haproxy_bin=$(command -v haproxy || echo /usr/sbin/haproxy)
for b in "$STOCK" "$nginx_bin" "$haproxy_bin" redis-server; do
	command -v "$b" >/dev/null || [ -x "$b" ] || { echo "missing $b (run make deps build)" >&2; exit 1; }
done

start_backends 3
redis_port=$(free_port)
$pin_rest redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"

all=(stock lb_memory lb_redis lb_offload nginx haproxy)
# PLAIN: a second caddy-lb binary (built with -pgo=off) serving lb_memory's
# config as lb_plain, to weigh a PGO build against it in the same run.
[ -z "${PLAIN:-}" ] || all+=(lb_plain)
read -ra variants <<<"${VARIANTS:-${all[*]}}"
[ "${variants[0]}" = stock ] || variants=(stock "${variants[@]}") # the baseline of every ratio
declare -A port url hdr pid adminp
for v in "${all[@]}"; do port[$v]=$(free_port); done
for v in "${variants[@]}"; do url[$v]="http://127.0.0.1:${port[$v]}/"; done
secret=bench-secret-0123456789abcdef

# Under CALLGRIND every system runs under $cg (lib.sh).

# go_proc NAME BINARY: runs a Caddy with $work/NAME.Caddyfile, pinned,
# GOMAXPROCS=1, its own admin port and storage.
go_proc() {
	adminp[$1]=$(free_port)
	sed -i "s|@ADMIN@|127.0.0.1:${adminp[$1]}|; s|@STORAGE@|$work/$1-storage|" "$work/$1.Caddyfile"
	env GOMAXPROCS=1 ${cg:+GODEBUG=asyncpreemptoff=1} $pin_lb ${cg:+$cg --callgrind-out-file=$work/$1.cg} "$2" run --config "$work/$1.Caddyfile" --adapter caddyfile >"$work/$1.log" 2>&1 &
	pid[$1]=$!
	pids+=($!)
}
common_globals() {
	printf '\tadmin @ADMIN@\n\tdefault_bind 127.0.0.1\n\tauto_https off\n\tpersist_config off\n\tstorage file_system @STORAGE@\n\tmetrics\n'
}

cat >"$work/stock.Caddyfile" <<CADDY
{
$(common_globals)
	servers {
		trusted_proxies static private_ranges
	}
}
:${port[stock]} {
	log {
		output file $work/stock-access.log
	}
	reverse_proxy $upstreams {
		lb_policy cookie lb $secret {
			fallback least_conn
		}
	}
}
CADDY
go_proc stock "$STOCK"

lb_site() { # VARIANT STORE [EXTRA]
	cat <<SITE
:${port[$1]} {
	forwarded {
		trusted_proxies private_ranges
	}
	log {
		output s3 logs {
			prefix $1
			spool_dir $work/$1-spool
		}
	}
	$3
	sticky_learn
	reverse_proxy $upstreams {
		lb_policy sticky {
			app_cookie PHPSESSID
			store $2
		}
	}
}
SITE
}
lb_variants=(lb_memory lb_redis lb_offload)
[ -z "${PLAIN:-}" ] || lb_variants+=(lb_plain)
for v in "${lb_variants[@]}"; do
	store=mem extra="" bin=$CADDY
	[ "$v" = lb_plain ] && bin=$PLAIN
	[ "$v" = lb_redis ] && store=shared
	[ "$v" = lb_offload ] && extra="asset_offload /upload {
		store media
		max_size 20MiB
		sign_secret $secret
	}"
	cat >"$work/$v.Caddyfile" <<CADDY
{
$(common_globals)
	session_store mem memory
	session_store shared redis {
		address 127.0.0.1:$redis_port
	}
	asset_store logs file $work/$v-shipped
	asset_store media file $work/$v-media
}
$(lb_site "$v" "$store" "$extra")
CADDY
	go_proc "$v" "$bin"
done

mkdir -p "$work/nginx"
{
	echo "daemon off; master_process off; worker_processes 1; pid $work/nginx/nginx.pid; error_log stderr warn;"
	echo "events { worker_connections 4096; }"
	echo "http {"
	echo "	client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy; fastcgi_temp_path $work/nginx/fastcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;"
	echo "	access_log $work/nginx-access.log;"
	echo "	set_real_ip_from 10.0.0.0/8; set_real_ip_from 172.16.0.0/12; set_real_ip_from 192.168.0.0/16; real_ip_header X-Forwarded-For; real_ip_recursive on;"
	echo "	upstream app { hash \$cookie_PHPSESSID consistent;"
	for u in $upstreams; do echo "		server $u;"; done
	echo "		keepalive 64; }"
	echo "	server { listen 127.0.0.1:${port[nginx]}; keepalive_requests 1000000;"
	echo "		location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";"
	echo "			proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;"
	echo "			proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Forwarded-Host \$host; } }"
	echo "}"
} >"$work/nginx/nginx.conf"
$pin_lb ${cg:+$cg --callgrind-out-file=$work/nginx.cg} "$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e stderr >"$work/nginx.log" 2>&1 &
pid[nginx]=$!
pids+=($!)

{
	echo "global"
	echo "	nbthread 1"
	echo "	log stdout format raw local0"
	echo "defaults"
	echo "	mode http"
	echo "	log global"
	echo "	option httplog"
	echo "	timeout connect 5s"
	echo "	timeout client 30s"
	echo "	timeout server 30s"
	echo "	option forwardfor"
	echo "frontend fe"
	echo "	bind 127.0.0.1:${port[haproxy]}"
	echo "	http-request set-header X-Forwarded-Proto http"
	echo "	default_backend app"
	echo "backend app"
	echo "	cookie SRV insert indirect nocache"
	i=0
	for u in $upstreams; do i=$((i + 1)); echo "	server b$i $u cookie b$i"; done
} >"$work/haproxy.cfg"
$pin_lb ${cg:+$cg --callgrind-out-file=$work/haproxy.cg} "$haproxy_bin" -f "$work/haproxy.cfg" >"$work/haproxy-access.log" 2>"$work/haproxy.log" &
pid[haproxy]=$!
pids+=($!)

for v in "${variants[@]}"; do wait_port "${port[$v]}"; done

# A returning browser's cookie for each.
for v in "${variants[@]}"; do
	case $v in
	stock) c=$(set_cookie "${url[$v]}" "" lb) ;;
	lb_*) c=$(set_cookie "${url[$v]}login" "" PHPSESSID) ;;
	nginx) c="PHPSESSID=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" ;;
	haproxy) c=$(set_cookie "${url[$v]}" "" SRV) ;;
	esac
	use_cookie "$v" "$c"
done

# wrk_for VARIANT SECONDS: wrk's load for that long; the request count in
# $work/VARIANT.n.
wrk_for() {
	local out errs
	out=$($pin_rest wrk -t"$THREADS" -c"$CONNS" -d"$2"s --timeout 60s -H "${hdr[$1]}" "${url[$1]}")
	errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
	[ -z "$errs" ] || { echo "$1 under load: $errs" >&2; exit 1; }
	awk '/requests in/ {print $1}' <<<"$out" >"$work/$1.n"
}
allocated() { # VARIANT: "allocations bytes" so far, from one scrape of the admin endpoint's /metrics
	curl -s "http://127.0.0.1:${adminp[$1]}/metrics" | awk '
		$1 == "go_memstats_mallocs_total" {m = $2}
		$1 == "go_memstats_alloc_bytes_total" {b = $2}
		END {printf "%.0f %.0f", m, b}'
}

if [ -n "${SYSCALLS:-}" ]; then
	# traced VARIANT CMD...: CMD while strace counts the process's calls.
	traced() {
		local v=$1 st
		shift
		strace -c -f -q -o "$work/$v.strace" -p "${pid[$v]}" &
		st=$!
		sleep 1
		"$@"
		sleep 0.5
		kill -INT "$st"
		wait "$st" || true
	}
	# per_request FILE N: "calls per request;the most frequent" from strace -c.
	per_request() {
		awk -v n="$2" '
			$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" && $4 / n >= 0.05 { top = top sprintf("%s %.1f, ", $NF, $4 / n) }
			$NF == "total" { total = $4 }
			END { sub(/, $/, "", top); printf "%.1f;%s", total / n, top }' "$1"
	}
	echo "| system | system calls per request, one connection | wrk -c$CONNS | the most frequent under wrk, per request | allocations per request | bytes allocated per request |"
	echo "|---|---|---|---|---|---|"
	for v in "${variants[@]}"; do
		curl_n "${url[$v]}" "${hdr[$v]}" 100 # warm-up
		allocs="" bytes=""
		if [ -n "${adminp[$v]:-}" ]; then
			read -r m0 b0 <<<"$(allocated "$v")"
			curl_n "${url[$v]}" "${hdr[$v]}" "$SYSCALLS"
			read -r m1 b1 <<<"$(allocated "$v")"
			allocs=$(((m1 - m0) / SYSCALLS)) bytes=$(((b1 - b0) / SYSCALLS))
		fi
		traced "$v" curl_n "${url[$v]}" "${hdr[$v]}" "$SYSCALLS"
		one=$(per_request "$work/$v.strace" "$SYSCALLS")
		traced "$v" wrk_for "$v" 10
		conc=$(per_request "$work/$v.strace" "$(cat "$work/$v.n")")
		printf '| %s | %s | %s | %s | %s | %s |\n' "$v" "${one%%;*}" "${conc%%;*}" "${conc#*;}" "$allocs" "$bytes"
	done
	echo
	echo "strace -c -f over $SYSCALLS requests one after another on one kept-alive connection, then over 10 s of wrk -c$CONNS (slowed by strace: more requests wait at each wake-up than at full speed), a returning browser's cookie; allocations from the Go runtime's counters over another $SYSCALLS requests on one connection, $(date -u +%Y-%m-%d)."
	exit 0
fi

if [ -n "$CALLGRIND" ]; then
	command -v callgrind_control >/dev/null || { echo "missing valgrind (run make deps)" >&2; exit 1; }
	echo "| system | instructions per request, one connection | second run | ratio to stock Caddy | instructions per request, wrk -c$CONNS | second run | ratio to stock Caddy |"
	echo "|---|---|---|---|---|---|---|"
	declare -A seq conc
	sleep 15 # what every Caddy does once after its start (its local CA, storage clean-up) is over
	for round in 1 2; do
		for v in "${variants[@]}"; do
			seq[$v]+="$(per_request "${pid[$v]}" "$work/$v.cg" "$v" "$round") "
			i=$(counted "${pid[$v]}" "$work/$v.cg" wrk_for "$v" "${CALLGRIND_SECONDS:-20}")
			conc[$v]+="$((i / $(cat "$work/$v.n"))) "
			callgrind_control -i off "${pid[$v]}" >/dev/null 2>&1
			echo "round $round $v: ${seq[$v]}/ ${conc[$v]}" >&2
		done
	done
	for v in "${variants[@]}"; do
		[ -z "${CALLGRIND_KEEP:-}" ] || cp "$work/$v".cg* "$CALLGRIND_KEEP/"
		read -r s1 s2 <<<"${seq[$v]}"
		read -r c1 c2 <<<"${conc[$v]}"
		read -r bs1 bs2 <<<"${seq[stock]}"
		read -r bc1 bc2 <<<"${conc[stock]}"
		printf '| %s | %s | %s | %.3f | %s | %s | %.3f |\n' "$v" "$s1" "$s2" \
			"$(awk -v a=$((s1 + s2)) -v b=$((bs1 + bs2)) 'BEGIN{print a/b}')" "$c1" "$c2" \
			"$(awk -v a=$((c1 + c2)) -v b=$((bc1 + bc2)) 'BEGIN{print a/b}')"
	done
	echo
	echo "valgrind --tool=callgrind (GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1 for the Go ones), each system after 200 requests of warm-up: $CALLGRIND requests one after another on one kept-alive connection, then wrk -c$CONNS for ${CALLGRIND_SECONDS:-20} s (the instructions over the requests wrk counted), in two rounds over all systems; a returning browser's cookie; $(date -u +%Y-%m-%d)."
	exit 0
fi


declare -A rps p50 p99 ratio cpu_us sys_us
for v in "${variants[@]}"; do # warm-up
	$pin_rest wrk -t"$THREADS" -c"$CONNS" -d2s -H "${hdr[$v]}" "${url[$v]}" >/dev/null
done
n=${#variants[@]}
for round in $(seq "$ROUNDS"); do
	declare -A round_rps=()
	for i in $(seq 0 $((n - 1))); do
		v=${variants[$(((i + round) % n))]}
		before=$(cpu_ticks "${pid[$v]}") sys_before=$(sys_ticks "${pid[$v]}")
		out=$($pin_rest wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "${hdr[$v]}" "${url[$v]}")
		after=$(cpu_ticks "${pid[$v]}") sys_after=$(sys_ticks "${pid[$v]}")
		errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
		[ -z "$errs" ] || { echo "$v round $round: $errs" >&2; exit 1; }
		r=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
		reqs=$(awk '/requests in/ {print $1}' <<<"$out")
		rps[$v]+="$r "
		p50[$v]+="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")") "
		p99[$v]+="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")") "
		cpu_us[$v]+="$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN{printf "%.2f", t / hz * 1e6 / n}') "
		sys_us[$v]+="$(awk -v t=$((sys_after - sys_before)) -v hz="$hz" -v n="$reqs" 'BEGIN{printf "%.2f", t / hz * 1e6 / n}') "
		round_rps[$v]=$r
		echo "round $round $v: $r req/s" >&2
	done
	for v in "${variants[@]}"; do
		ratio[$v]+="$(awk -v a="${round_rps[$v]}" -v b="${round_rps[stock]}" 'BEGIN{print a/b}') "
	done
done

if [ "$ROUNDS" -gt 0 ]; then
echo "| system | requests/s (median of $ROUNDS) | ratio to stock Caddy (median of paired rounds) | ratio quartiles | p50 ms | p99 ms | CPU µs per request | of which in the kernel | RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
for v in "${variants[@]}"; do
	printf '| %s | %.0f | %.3f | %s | %s | %s | %s | %s | %s |\n' "$v" "$(median "${rps[$v]}")" "$(median "${ratio[$v]}")" \
		"$(quartiles "${ratio[$v]}")" "$(median "${p50[$v]}")" "$(median "${p99[$v]}")" "$(median "${cpu_us[$v]}")" "$(median "${sys_us[$v]}")" "$(rss "${pid[$v]}")"
done
echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION x $ROUNDS rounds (rotating order, after a warm-up), every system pinned to one core${pin_lb:+ ($pin_lb)}, GOMAXPROCS=1 for the Go ones, $(date -u +%Y-%m-%d)."
fi

if [ -n "${PROFILE:-}" ]; then
	secs=${PROFILE_SECONDS:-10}
	for v in "${variants[@]}"; do
		[ -n "${adminp[$v]:-}" ] || continue # the Go ones
		$pin_rest wrk -t"$THREADS" -c"$CONNS" -d$((secs + 2))s -H "${hdr[$v]}" "${url[$v]}" >/dev/null &
		load=$!
		sleep 1
		curl -s -f -o "$PROFILE-$v.pprof" "http://127.0.0.1:${adminp[$v]}/debug/pprof/profile?seconds=$secs"
		wait "$load"
		echo "CPU profile of $v under load: $PROFILE-$v.pprof"
	done
fi
