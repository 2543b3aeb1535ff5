#!/usr/bin/env bash
# Load benchmark of lb_policy sticky against stock lb_policy cookie, through
# the built binary, in one run: one caddy-lb process serves every variant on
# its own loopback port in front of the same three demo backends, and wrk
# measures them in interleaved rounds, in a rotating order, so that drift
# hits all alike. Each
# variant's ratio is taken against the stock run of the same round, and the
# median of those paired ratios is reported, for requests per wall second
# and for requests per CPU second of the Caddy process. With two or more cores, Caddy
# is pinned to the last core and everything else (wrk, backends, Redis) to
# the others, so the load balancer's CPU is what limits throughput.
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend integration/bench/wrk.sh
#
# Env: ROUNDS (7), DURATION (4s), CONNS (32), THREADS (1). Prints a Markdown
# table (median requests/s over the rounds, ratio to stock, p99 latency).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
CADDY=${CADDY:-$root/bin/caddy}
BACKEND=${BACKEND:-$root/bin/demo-backend}
ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
for cmd in wrk redis-server curl "$CADDY" "$BACKEND"; do
	command -v "$cmd" >/dev/null || { echo "missing $cmd (run make deps build)" >&2; exit 1; }
done

# CPU pinning: Caddy alone on the last core.
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

# A free loopback port: bind-test random ports below the ephemeral range.
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
	for _ in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listens on $1" >&2
	exit 1
}

upstreams=""
for i in 1 2 3; do
	port=$(free_port)
	$pin_rest "$BACKEND" -listen "127.0.0.1:$port" -name "b$i" >"$work/b$i.log" 2>&1 &
	pids+=($!)
	upstreams+="127.0.0.1:$port "
done
redis_port=$(free_port)
$pin_rest redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)

admin=$(free_port)
variants=(stock_cookie sticky_cookie_memory sticky_cookie_redis sticky_app_cookie_memory sticky_app_cookie_redis)
declare -A port
for v in "${variants[@]}"; do port[$v]=$(free_port); done
secret=bench-secret-0123456789abcdef

cat >"$work/Caddyfile" <<CADDY
{
	admin 127.0.0.1:$admin
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	storage file_system $work/storage
	session_store mem memory
	session_store shared redis {
		address 127.0.0.1:$redis_port
	}
}
:${port[stock_cookie]} {
	reverse_proxy $upstreams {
		lb_policy cookie lb $secret {
			fallback least_conn
		}
	}
}
:${port[sticky_cookie_memory]} {
	reverse_proxy $upstreams {
		lb_policy sticky {
			secret $secret
			store mem
		}
	}
}
:${port[sticky_cookie_redis]} {
	reverse_proxy $upstreams {
		lb_policy sticky {
			secret $secret
			store shared
		}
	}
}
:${port[sticky_app_cookie_memory]} {
	sticky_learn
	reverse_proxy $upstreams {
		lb_policy sticky {
			app_cookie PHPSESSID
			store mem
		}
	}
}
:${port[sticky_app_cookie_redis]} {
	sticky_learn
	reverse_proxy $upstreams {
		lb_policy sticky {
			app_cookie PHPSESSID
			store shared
		}
	}
}
CADDY
for u in $upstreams; do wait_port "${u##*:}"; done
wait_port "$redis_port"
$pin_lb "$CADDY" run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
caddy_pid=$!
pids+=($caddy_pid)
for v in "${variants[@]}"; do wait_port "${port[$v]}"; done

# The cookie a returning client sends: the hit path is what users live on.
declare -A cookie
for v in "${variants[@]}"; do
	url="http://127.0.0.1:${port[$v]}"
	case $v in
	*app_cookie*)
		cookie[$v]=$(curl -s -D - -o /dev/null "$url/login" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(PHPSESSID=[^;]*\).*/\1/p' | head -1) ;;
	stock_cookie)
		cookie[$v]=$(curl -s -D - -o /dev/null "$url/" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(lb=[^;]*\).*/\1/p' | head -1) ;;
	*)
		# Twice: the second answer re-issues the cookie as recorded.
		first=$(curl -s -D - -o /dev/null "$url/" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(lb_affinity=[^;]*\).*/\1/p' | head -1)
		cookie[$v]=$(curl -s -D - -o /dev/null -H "Cookie: $first" "$url/" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(lb_affinity=[^;]*\).*/\1/p' | head -1) ;;
	esac
	[ -n "${cookie[$v]}" ] || { echo "no cookie for $v" >&2; cat "$work/caddy.log" >&2; exit 1; }
	# Every request of the run must be a hit on one backend.
	b1=$(curl -s -o /dev/null -w '%header{x-backend}' -H "Cookie: ${cookie[$v]}" "$url/")
	b2=$(curl -s -o /dev/null -w '%header{x-backend}' -H "Cookie: ${cookie[$v]}" "$url/")
	[ "$b1" = "$b2" ] || { echo "$v is not sticky: $b1 then $b2" >&2; exit 1; }
done

to_ms() { # wrk latency like 1.23ms, 456.00us, 1.02s
	awk -v v="$1" 'BEGIN{ if (v ~ /us$/) printf "%.2f", v/1000; else if (v ~ /ms$/) printf "%.2f", v+0; else if (v ~ /s$/) printf "%.2f", v*1000; else print v }'
}
declare -A rps p99 ratio redis_calls requests cpu_ratio
# CPU time Caddy used, in clock ticks (utime + stime): requests per CPU
# second does not move with the machine's scheduling noise the way
# requests per wall second does.
caddy_ticks() { awk '{print $14 + $15}' "/proc/$caddy_pid/stat"; }
# Redis commands the node sends during a run: the hit path should send none.
redis_commands() {
	redis-cli -p "$redis_port" info commandstats | tr -d '\r' |
		awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" {n += $3} END {print n + 0}'
}
# Warm-up: connections, heap and caches settle before anything is counted.
for v in "${variants[@]}"; do
	$pin_rest wrk -t"$THREADS" -c"$CONNS" -d2s -H "Cookie: ${cookie[$v]}" "http://127.0.0.1:${port[$v]}/" >/dev/null
done
n=${#variants[@]}
for round in $(seq "$ROUNDS"); do
	# Rotate the order every round so no variant always runs first or
	# right after the same neighbour; each is paired with the stock run of
	# its own round.
	order=()
	for i in $(seq 0 $((n - 1))); do order+=("${variants[$(((i + round) % n))]}"); done
	declare -A round_rps=() round_eff=()
	for v in "${order[@]}"; do
		before=$(redis_commands)
		ticks_before=$(caddy_ticks)
		out=$($pin_rest wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Cookie: ${cookie[$v]}" "http://127.0.0.1:${port[$v]}/")
		r=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
		l=$(awk '$1 == "99%" {print $2}' <<<"$out")
		errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
		[ -z "$errs" ] || { echo "$v round $round: $errs" >&2; exit 1; }
		redis_calls[$v]=$(( ${redis_calls[$v]:-0} + $(redis_commands) - before ))
		requests[$v]=$(( ${requests[$v]:-0} + $(awk '/requests in/ {print $1}' <<<"$out") ))
		rps[$v]+="$r "
		round_rps[$v]=$r
		n_req=$(awk '/requests in/ {print $1}' <<<"$out")
		round_eff[$v]=$(awk -v n="$n_req" -v t="$(( $(caddy_ticks) - ticks_before ))" 'BEGIN{print n / (t > 0 ? t : 1)}')
		p99[$v]+="$(to_ms "$l") "
		echo "round $round $v: $r req/s, p99 $l" >&2
	done
	for v in "${variants[@]}"; do
		ratio[$v]+="$(awk -v a="${round_rps[$v]}" -v b="${round_rps[stock_cookie]}" 'BEGIN{print a/b}') "
		cpu_ratio[$v]+="$(awk -v a="${round_eff[$v]}" -v b="${round_eff[stock_cookie]}" 'BEGIN{print a/b}') "
	done
done

median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# quartiles prints "q1-q3" of a list: the spread the noise leaves.
quartiles() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{printf "%.3f-%.3f", a[int((NR+3)/4)], a[int((3*NR+3)/4)]}'; }
echo "| variant | requests/s (median of $ROUNDS) | ratio to stock cookie (median of paired rounds) | ratio quartiles | requests per Caddy CPU-second ratio | p99 ms (median) | Redis commands per request |"
echo "|---|---|---|---|---|---|---|"
for v in "${variants[@]}"; do
	printf '| %s | %.0f | %.3f | %s | %.3f | %s | %s |\n' "$v" "$(median "${rps[$v]}")" "$(median "${ratio[$v]}")" "$(quartiles "${ratio[$v]}")" "$(median "${cpu_ratio[$v]}")" "$(median "${p99[$v]}")" \
		"$(awk -v c="${redis_calls[$v]}" -v n="${requests[$v]}" 'BEGIN{printf "%.4f", c/n}')"
done
echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION x $ROUNDS interleaved rounds, hit path (a returning client's cookie), $cores cores${pin_lb:+ (Caddy pinned to one core)}, $(date -u +%Y-%m-%d)."
