#!/usr/bin/env bash
# wrk: TLS pass-through through caddy-lb's layer4 proxy with the sticky
# policy (memory store) against the same proxy with caddy-l4's stock
# ip_hash policy and against HAProxy (Debian) in mode tcp with balance
# source, all sending PROXY protocol v2 to the same nginx backends, which
# terminate TLS themselves. Two loads: requests over kept-alive
# connections (each connection passes the proxy once), and a new TLS
# connection per request (Connection: close), which is what the
# selection policy costs. Caddy and HAProxy are pinned to the same core.
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend integration/bench/passthrough.sh
source "$(dirname "$0")/lib.sh"
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
haproxy_bin=$(command -v haproxy || echo /usr/sbin/haproxy)
for b in "$nginx_bin" "$haproxy_bin" openssl; do
	command -v "$b" >/dev/null || [ -x "$b" ] || { echo "missing $b (run make deps)" >&2; exit 1; }
done

# Two nginx backends with one self-signed certificate, reading PROXY v2.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
upstreams=""
for i in 1 2; do
	p=$(free_port)
	mkdir -p "$work/n$i"
	cat >"$work/n$i/nginx.conf" <<NGINX
daemon off;
master_process off;
pid $work/n$i/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $work/n$i/body;
	proxy_temp_path $work/n$i/proxy;
	fastcgi_temp_path $work/n$i/fastcgi;
	uwsgi_temp_path $work/n$i/uwsgi;
	scgi_temp_path $work/n$i/scgi;
	server {
		listen 127.0.0.1:$p ssl proxy_protocol;
		ssl_certificate $work/cert.pem;
		ssl_certificate_key $work/key.pem;
		keepalive_requests 1000000;
		location / { return 200 "n$i \$proxy_protocol_addr\n"; }
	}
}
NGINX
	$pin_rest "$nginx_bin" -p "$work/n$i" -c "$work/n$i/nginx.conf" -e stderr >"$work/n$i.log" 2>&1 &
	pids+=($!)
	wait_port "$p"
	upstreams+="127.0.0.1:$p "
done

variants=(ip_hash sticky haproxy)
declare -A port url hdr
for v in "${variants[@]}"; do port[$v]=$(free_port); url[$v]="https://127.0.0.1:${port[$v]}/"; done

l4site() { # VARIANT POLICY
	printf '\tservers 127.0.0.1:%s {\n\t\tlistener_wrappers {\n\t\t\tlayer4 {\n\t\t\t\t@tls tls\n\t\t\t\troute @tls {\n\t\t\t\t\tproxy {\n\t\t\t\t\t\tproxy_protocol v2\n\t\t\t\t\t\tlb_policy %s\n' "${port[$1]}" "$2"
	for u in $upstreams; do printf '\t\t\t\t\t\tupstream %s\n' "$u"; done
	printf '\t\t\t\t\t}\n\t\t\t\t}\n\t\t\t}\n\t\t\ttls\n\t\t}\n\t}\n'
}
cat >"$work/Caddyfile" <<CADDY
{
$(global_options)
	session_store mem memory
$(l4site ip_hash ip_hash)
$(l4site sticky "sticky {
							store mem
						}")
}
https://bench.test:${port[ip_hash]} {
	tls internal
	respond "terminated"
}
https://bench.test:${port[sticky]} {
	tls internal
	respond "terminated"
}
CADDY
start_caddy "$work/Caddyfile"
for v in ip_hash sticky; do wait_port "${port[$v]}"; done

cat >"$work/haproxy.cfg" <<HAPROXY
global
	maxconn 8192
	nbthread 1
defaults
	mode tcp
	timeout connect 2s
	timeout client 30s
	timeout server 30s
frontend front
	bind 127.0.0.1:${port[haproxy]}
	default_backend pool
backend pool
	balance source
$(i=0; for u in $upstreams; do i=$((i+1)); printf '\tserver n%s %s send-proxy-v2\n' "$i" "$u"; done)
HAPROXY
$pin_lb "$haproxy_bin" -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_port "${port[haproxy]}"

for v in "${variants[@]}"; do
	body=$(curl -sk "${url[$v]}")
	[[ $body == n[12]\ 127.0.0.1 ]] || { echo "$v answers $body, want nginx with the client address" >&2; cat "$work/caddy.log" >&2; exit 1; }
done

echo "### kept-alive connections"
for v in "${variants[@]}"; do hdr[$v]=""; done
run_rounds ip_hash sticky haproxy
echo
echo "### a new TLS connection per request"
for v in "${variants[@]}"; do hdr[$v]="Connection: close"; done
run_rounds ip_hash sticky haproxy
