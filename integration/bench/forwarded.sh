#!/usr/bin/env bash
# wrk: reverse_proxy with the forwarded handler against the same
# reverse_proxy without it, through the built binary: an edge client
# (nothing trusted, spoofed headers stripped) and a trusted 3-hop chain.
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend integration/bench/forwarded.sh
source "$(dirname "$0")/lib.sh"

start_backends 1
variants=(plain forwarded_edge forwarded_edge_both_formats forwarded_trusted_chain)
declare -A port url hdr
for v in "${variants[@]}"; do port[$v]=$(free_port); url[$v]="http://127.0.0.1:${port[$v]}/"; done
hdr[plain]="X-Forwarded-For: 6.6.6.6"
hdr[forwarded_edge]="X-Forwarded-For: 6.6.6.6"
hdr[forwarded_edge_both_formats]="X-Forwarded-For: 6.6.6.6"
hdr[forwarded_trusted_chain]="X-Forwarded-For: 203.0.113.7, 10.0.0.1, 10.0.0.2"

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
CADDY
start_caddy "$work/Caddyfile"
for v in "${variants[@]}"; do wait_port "${port[$v]}"; done
run_rounds plain "${variants[@]:1}"
