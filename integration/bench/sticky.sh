#!/usr/bin/env bash
# wrk: lb_policy sticky (memory and Redis stores, LB cookie and app cookie
# keys) against stock lb_policy cookie, on the hit path (a returning
# client's cookie), through the built binary. Also counts the Redis
# commands the node sends per request: the hit path should send none.
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend integration/bench/sticky.sh
source "$(dirname "$0")/lib.sh"
command -v redis-server >/dev/null || { echo "missing redis-server (run make deps)" >&2; exit 1; }

start_backends 3
redis_port=$(free_port)
$pin_rest redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"

variants=(stock_cookie sticky_cookie_memory sticky_cookie_redis sticky_app_cookie_memory sticky_app_cookie_redis)
declare -A port url hdr
for v in "${variants[@]}"; do port[$v]=$(free_port); url[$v]="http://127.0.0.1:${port[$v]}/"; done
secret=bench-secret-0123456789abcdef

cat >"$work/Caddyfile" <<CADDY
{
$(global_options)
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
start_caddy "$work/Caddyfile"
for v in "${variants[@]}"; do wait_port "${port[$v]}"; done

for v in "${variants[@]}"; do
	case $v in
	*app_cookie*) c=$(set_cookie "${url[$v]}login" "" PHPSESSID) ;;
	stock_cookie) c=$(set_cookie "${url[$v]}" "" lb) ;;
	*) # the second answer re-issues the cookie as recorded
		c=$(set_cookie "${url[$v]}" "$(set_cookie "${url[$v]}" "" lb_affinity)" lb_affinity) ;;
	esac
	use_cookie "$v" "$c"
done

redis_commands() {
	redis-cli -p "$redis_port" info commandstats | tr -d '\r' |
		awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" {n += $3} END {print n + 0}'
}
extra_counter=redis_commands
extra_title="Redis commands per request"
run_rounds stock_cookie "${variants[@]:1}"
