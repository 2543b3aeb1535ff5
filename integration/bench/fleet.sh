#!/usr/bin/env bash
# wrk: the sticky hit path (a returning client's application cookie, so
# every request reads the store) with the session store on a single Redis,
# behind Sentinel, and on a three-primary Redis Cluster, through the built
# binary. The last column counts the commands every Redis server of the
# deployment processed per request: the hit path should send none.
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend integration/bench/fleet.sh
source "$(dirname "$0")/lib.sh"
for cmd in redis-server redis-sentinel redis-cli; do
	command -v $cmd >/dev/null || { echo "missing $cmd (run make deps)" >&2; exit 1; }
done

start_backends 3
redis() { # PORT [ARGS...]: a redis-server on PORT
	local p=$1
	shift
	mkdir -p "$work/r$p"
	$pin_rest redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/r$p" "$@" >"$work/r$p.log" 2>&1 &
	pids+=($!)
	wait_port "$p"
}
single=$(free_port)
redis "$single"

primary=$(free_port) replica=$(free_port)
redis "$primary"
redis-cli -p "$primary" config set repl-diskless-sync-delay 0 >/dev/null
redis "$replica" --replicaof 127.0.0.1 "$primary"
sentinels=""
for i in 1 2 3; do
	p=$(free_port)
	mkdir -p "$work/s$p"
	printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor bench 127.0.0.1 %s 2\nsentinel down-after-milliseconds bench 1000\n' \
		"$p" "$work/s$p" "$primary" >"$work/s$p/sentinel.conf"
	$pin_rest redis-sentinel "$work/s$p/sentinel.conf" >"$work/s$p.log" 2>&1 &
	pids+=($!)
	wait_port "$p"
	sentinels+="127.0.0.1:$p "
done

cluster_ports=""
for i in 1 2 3; do
	p=$(free_port)
	redis "$p" --cluster-enabled yes --cluster-config-file "$work/r$p/nodes.conf" --cluster-port "$(free_port)"
	cluster_ports+="$p "
done
# shellcheck disable=SC2046
redis-cli --cluster create $(for p in $cluster_ports; do echo "127.0.0.1:$p"; done) --cluster-replicas 0 --cluster-yes >"$work/cluster.log" 2>&1
for p in $cluster_ports; do
	for _ in $(seq 100); do
		redis-cli -p "$p" cluster info | grep -q cluster_state:ok && break
		sleep 0.1
	done
done
first_cluster=${cluster_ports%% *}

variants=(single sentinel cluster)
declare -A port url hdr servers
for v in "${variants[@]}"; do port[$v]=$(free_port); url[$v]="http://127.0.0.1:${port[$v]}/"; done
servers[single]=$single
servers[sentinel]="$primary $replica"
servers[cluster]=$cluster_ports

site() { # VARIANT STORE
	printf ':%s {\n\tsticky_learn\n\treverse_proxy %s {\n\t\tlb_policy sticky {\n\t\t\tapp_cookie PHPSESSID\n\t\t\tstore %s\n\t\t}\n\t}\n}\n' \
		"${port[$1]}" "$upstreams" "$2"
}
cat >"$work/Caddyfile" <<CADDY
{
$(global_options)
	session_store single redis 127.0.0.1:$single {
		heartbeat off
	}
	session_store sentinel redis {
		sentinel bench
		address $sentinels
		heartbeat off
	}
	session_store cluster redis 127.0.0.1:$first_cluster {
		heartbeat off
	}
}
$(site single single)
$(site sentinel sentinel)
$(site cluster cluster)
CADDY
start_caddy "$work/Caddyfile"
for v in "${variants[@]}"; do wait_port "${port[$v]}"; done
sleep 1

for v in "${variants[@]}"; do
	use_cookie "$v" "$(set_cookie "${url[$v]}login" "" PHPSESSID)"
done

# Commands processed by every server of every deployment (INFO itself,
# and replication and cluster-bus traffic, are not client commands).
redis_commands() {
	local n=0 p
	for p in $single $primary $cluster_ports; do
		n=$((n + $(redis-cli -p "$p" info commandstats | tr -d '\r' |
			awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" && $1 != "cmdstat_ping" && $1 != "cmdstat_cluster" && $1 != "cmdstat_replconf" {n += $3} END {print n + 0}')))
	done
	echo "$n"
}
# Idle: what the clients' background work (epoch checks every 2 s, 64
# of them on the cluster; topology refreshes) sends with no request.
idle_before=$(redis_commands)
sleep 10
echo "idle: $(( $(redis_commands) - idle_before )) commands in 10 s" >&2

extra_counter=redis_commands
extra_title="Redis commands per request (all deployments)"
run_rounds single sentinel cluster

# PROFILE=dir: a 10 s CPU profile of caddy-lb under load per variant.
if [ -n "${PROFILE:-}" ]; then
	mkdir -p "$PROFILE"
	for v in "${variants[@]}"; do
		$pin_rest wrk -t"$THREADS" -c"$CONNS" -d12s -H "${hdr[$v]}" "${url[$v]}" >/dev/null &
		load=$!
		sleep 1
		curl -s -o "$PROFILE/$v.pprof" "http://127.0.0.1:$admin/debug/pprof/profile?seconds=10"
		wait "$load" || true
	done
fi
