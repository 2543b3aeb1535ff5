#!/usr/bin/env bash
# wrk: reverse_proxy with transport reencrypt (trust_internal, and with a
# client certificate) against stock transport http with TLS trusting the
# same CA through tls_trust_pool file, to one TLS backend (a second Caddy
# serving a certificate from `caddy lb-cert`), keep-alive on both sides.
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend integration/bench/reencrypt.sh
source "$(dirname "$0")/lib.sh"

backend_port=$(free_port)
upstream="127.0.0.1:$backend_port"
variants=(http_tls reencrypt reencrypt_mtls)
declare -A port url hdr
for v in "${variants[@]}"; do port[$v]=$(free_port); url[$v]="http://127.0.0.1:${port[$v]}/"; hdr[$v]=""; done

# 1. caddy-lb alone creates its internal CA in $work/storage.
cat >"$work/Caddyfile" <<CADDY
{
$(global_options)
	skip_install_trust
}
:${port[reencrypt]} {
	reverse_proxy $upstream {
		transport reencrypt
	}
}
CADDY
start_caddy "$work/Caddyfile"
wait_port "${port[reencrypt]}"

# 2. The backend's certificate from that CA, served by a second Caddy.
"$CADDY" lb-cert --storage-dir "$work/storage" --out "$work/backend-tls" --san 127.0.0.1 >/dev/null
cat >"$work/Backendfile" <<CADDY
{
	admin off
	default_bind 127.0.0.1
	auto_https disable_redirects
	persist_config off
	storage file_system $work/backend-storage
}
https://127.0.0.1:$backend_port {
	tls $work/backend-tls/chain.pem $work/backend-tls/key.pem
	respond "hello from the TLS backend"
}
CADDY
$pin_rest "$CADDY" run --config "$work/Backendfile" --adapter caddyfile >"$work/backend.log" 2>&1 &
pids+=($!)
wait_port "$backend_port"

# 3. Every variant, loaded through the admin API.
cat >"$work/Caddyfile" <<CADDY
{
$(global_options)
	skip_install_trust
}
:${port[http_tls]} {
	reverse_proxy https://$upstream {
		transport http {
			tls_trust_pool file $work/backend-tls/ca.pem
		}
	}
}
:${port[reencrypt]} {
	reverse_proxy $upstream {
		transport reencrypt
	}
}
:${port[reencrypt_mtls]} {
	reverse_proxy $upstream {
		transport reencrypt {
			client_cert internal
		}
	}
}
CADDY
curl -sf -X POST -H 'Content-Type: text/caddyfile' --data-binary @"$work/Caddyfile" "http://127.0.0.1:$admin/load" >/dev/null ||
	{ echo "loading the bench config failed" >&2; cat "$work/caddy.log" >&2; exit 1; }
for v in "${variants[@]}"; do
	wait_port "${port[$v]}"
	body=$(curl -s "${url[$v]}")
	[ "$body" = "hello from the TLS backend" ] || { echo "$v answers '$body'" >&2; cat "$work/caddy.log" >&2; exit 1; }
done

run_rounds http_tls "${variants[@]:1}"
