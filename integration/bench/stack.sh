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
# (a path prefix: also take 10 s CPU profiles of stock and lb_memory
# under the same load, PROFILE-stock.pprof and PROFILE-lb_memory.pprof,
# for `go tool pprof -diff_base`).
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend STOCK=bin/caddy-stock integration/bench/stack.sh
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

# go_proc NAME BINARY: runs a Caddy with $work/NAME.Caddyfile, pinned,
# GOMAXPROCS=1, its own admin port and storage.
go_proc() {
	adminp[$1]=$(free_port)
	sed -i "s|@ADMIN@|127.0.0.1:${adminp[$1]}|; s|@STORAGE@|$work/$1-storage|" "$work/$1.Caddyfile"
	GOMAXPROCS=1 $pin_lb "$2" run --config "$work/$1.Caddyfile" --adapter caddyfile >"$work/$1.log" 2>&1 &
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
$pin_lb "$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e stderr >"$work/nginx.log" 2>&1 &
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
$pin_lb "$haproxy_bin" -f "$work/haproxy.cfg" >"$work/haproxy-access.log" 2>"$work/haproxy.log" &
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

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

declare -A rps p50 p99 ratio cpu_us
for v in "${variants[@]}"; do # warm-up
	$pin_rest wrk -t"$THREADS" -c"$CONNS" -d2s -H "${hdr[$v]}" "${url[$v]}" >/dev/null
done
n=${#variants[@]}
for round in $(seq "$ROUNDS"); do
	declare -A round_rps=()
	for i in $(seq 0 $((n - 1))); do
		v=${variants[$(((i + round) % n))]}
		before=$(cpu_ticks "${pid[$v]}")
		out=$($pin_rest wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "${hdr[$v]}" "${url[$v]}")
		after=$(cpu_ticks "${pid[$v]}")
		errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
		[ -z "$errs" ] || { echo "$v round $round: $errs" >&2; exit 1; }
		r=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
		reqs=$(awk '/requests in/ {print $1}' <<<"$out")
		rps[$v]+="$r "
		p50[$v]+="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")") "
		p99[$v]+="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")") "
		cpu_us[$v]+="$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN{printf "%.2f", t / hz * 1e6 / n}') "
		round_rps[$v]=$r
		echo "round $round $v: $r req/s" >&2
	done
	for v in "${variants[@]}"; do
		ratio[$v]+="$(awk -v a="${round_rps[$v]}" -v b="${round_rps[stock]}" 'BEGIN{print a/b}') "
	done
done

rss() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
if [ "$ROUNDS" -gt 0 ]; then
echo "| system | requests/s (median of $ROUNDS) | ratio to stock Caddy (median of paired rounds) | ratio quartiles | p50 ms | p99 ms | CPU µs per request | RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
for v in "${variants[@]}"; do
	printf '| %s | %.0f | %.3f | %s | %s | %s | %s | %s |\n' "$v" "$(median "${rps[$v]}")" "$(median "${ratio[$v]}")" \
		"$(quartiles "${ratio[$v]}")" "$(median "${p50[$v]}")" "$(median "${p99[$v]}")" "$(median "${cpu_us[$v]}")" "$(rss "${pid[$v]}")"
done
echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION x $ROUNDS rounds (rotating order, after a warm-up), every system pinned to one core${pin_lb:+ ($pin_lb)}, GOMAXPROCS=1 for the Go ones, $(date -u +%Y-%m-%d)."
fi

if [ -n "${PROFILE:-}" ]; then
	for v in stock lb_memory; do
		$pin_rest wrk -t"$THREADS" -c"$CONNS" -d12s -H "${hdr[$v]}" "${url[$v]}" >/dev/null &
		load=$!
		sleep 1
		curl -s -o "$PROFILE-$v.pprof" "http://127.0.0.1:${adminp[$v]}/debug/pprof/profile?seconds=10"
		wait "$load"
		echo "CPU profile of $v under load: $PROFILE-$v.pprof"
	done
fi
