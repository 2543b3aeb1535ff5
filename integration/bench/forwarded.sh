#!/usr/bin/env bash
# wrk: reverse_proxy with the forwarded handler against the same
# reverse_proxy without it, through the built binary: an edge client
# (nothing trusted, spoofed headers stripped) and a trusted 3-hop chain;
# also reverse_proxy alone sending the same headers upstream as the edge
# variant (X-Forwarded-Port by header_up).
# CALLGRIND=N counts instead the instructions per request over N requests
# on one kept-alive connection, under callgrind (lib.sh), two rounds,
# with GOGC=off.
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend integration/bench/forwarded.sh
source "$(dirname "$0")/lib.sh"

start_backends 1
variants=(plain forwarded_edge forwarded_edge_both_formats forwarded_trusted_chain plain_with_port)
declare -A port url hdr
for v in "${variants[@]}"; do port[$v]=$(free_port); url[$v]="http://127.0.0.1:${port[$v]}/"; done
hdr[plain]="X-Forwarded-For: 6.6.6.6"
hdr[forwarded_edge]="X-Forwarded-For: 6.6.6.6"
hdr[forwarded_edge_both_formats]="X-Forwarded-For: 6.6.6.6"
hdr[forwarded_trusted_chain]="X-Forwarded-For: 203.0.113.7, 10.0.0.1, 10.0.0.2"
hdr[plain_with_port]="X-Forwarded-For: 6.6.6.6"

cat >"$work/Caddyfile" <<CADDY
{
$(global_options)
}
:${port[plain]} {
	reverse_proxy $upstreams
}
:${port[forwarded_edge]} {
	forwarded
	reverse_proxy $upstreams
}
:${port[forwarded_edge_both_formats]} {
	forwarded {
		emit x_forwarded forwarded
	}
	reverse_proxy $upstreams
}
:${port[forwarded_trusted_chain]} {
	forwarded {
		trusted_proxies 127.0.0.1/32 10.0.0.0/8
	}
	reverse_proxy $upstreams
}
# The same request upstream as forwarded_edge sends, from stock directives:
# X-Forwarded-Port is the one header forwarded adds that reverse_proxy does
# not, so this prices the output apart from the handler.
:${port[plain_with_port]} {
	reverse_proxy $upstreams {
		header_up X-Forwarded-Port {http.request.local.port}
	}
}
CADDY
# A collection falling in one variant's count and not in another's moves
# it by more than the handler costs: under CALLGRIND, Caddy runs without
# (the allocations, what collection costs in proportion, are in the Go
# benchmarks' -benchmem).
[ -z "$CALLGRIND" ] || export GOGC=off
start_caddy "$work/Caddyfile"
for v in "${variants[@]}"; do wait_port "${port[$v]}"; done
if [ -n "$CALLGRIND" ]; then
	declare -A ipr
	for round in 1 2; do
		for v in "${variants[@]}"; do
			ipr[$v]+="$(per_request "$caddy_pid" "$work/caddy.cg" "$v" "$round") "
			callgrind_control -i off "$caddy_pid" >/dev/null 2>&1
		done
	done
	# CALLGRIND_KEEP=DIR keeps the dumps, numbered in the order measured.
	[ -z "${CALLGRIND_KEEP:-}" ] || cp "$work"/caddy.cg.* "$CALLGRIND_KEEP/"
	# The ratio is plain's instructions over the variant's: what the
	# variant's requests/s would be, as a share of plain's, if only
	# instructions counted.
	echo "| variant | instructions per request | second run | over plain | ratio to plain |"
	echo "|---|---|---|---|---|"
	read -r b1 b2 <<<"${ipr[plain]}"
	for v in "${variants[@]}"; do
		read -r a1 a2 <<<"${ipr[$v]}"
		printf '| %s | %s | %s | %s | %.4f |\n' "$v" "$a1" "$a2" $(((a1 + a2 - b1 - b2) / 2)) "$(awk -v a=$((a1 + a2)) -v b=$((b1 + b2)) 'BEGIN{print b/a}')"
	done
	read -r a1 a2 <<<"${ipr[forwarded_edge]}"
	read -r b1 b2 <<<"${ipr[plain_with_port]}"
	printf '\nforwarded_edge against plain_with_port (the same request upstream): %.4f\n' "$(awk -v a=$((a1 + a2)) -v b=$((b1 + b2)) 'BEGIN{print b/a}')"
	echo
	echo "valgrind --tool=callgrind, GODEBUG=asyncpreemptoff=1 GOGC=off, one process serving every variant, $CALLGRIND requests one after another on one kept-alive connection after 200 of warm-up, two rounds, $(date -u +%Y-%m-%d)."
	exit 0
fi
run_rounds plain "${variants[@]:1}"
