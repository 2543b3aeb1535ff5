#!/usr/bin/env bash
# wrk: access logging with `output s3` (spooled, gzipped, shipped to a
# versitygw bucket) against `output file`, and no access log, on one
# caddy-lb process answering with `respond` so that the log is a large
# share of each request's cost. Afterwards: caddy-lb's peak RSS, and that
# every line reached the bucket.
#
#   CADDY=bin/caddy BACKEND=bin/demo-backend integration/bench/logship.sh
source "$(dirname "$0")/lib.sh"

vgw=$(command -v versitygw || echo "$(go env GOPATH | cut -d: -f1)/bin/versitygw")
[ -x "$vgw" ] || { echo "missing versitygw (run make deps)" >&2; exit 1; }
s3_port=$(free_port)
mkdir -p "$work/s3/logs" "$work/iam"
ROOT_ACCESS_KEY=bench ROOT_SECRET_KEY=bench-secret $pin_rest "$vgw" --port "127.0.0.1:$s3_port" --iam-dir "$work/iam" posix "$work/s3" >"$work/vgw.log" 2>&1 &
pids+=($!)
wait_port "$s3_port"

variants=(file s3 none)
declare -A port url hdr
for v in "${variants[@]}"; do port[$v]=$(free_port); url[$v]="http://127.0.0.1:${port[$v]}/"; hdr[$v]=""; done

cat >"$work/Caddyfile" <<CADDY
{
$(global_options)
	asset_store logs s3 {
		bucket logs
		endpoint http://127.0.0.1:$s3_port
		region us-east-1
		access_key bench
		secret_key bench-secret
		path_style
	}
}
:${port[file]} {
	log {
		output file $work/access.log {
			roll_size 1GiB
		}
	}
	respond "ok"
}
:${port[s3]} {
	log {
		output s3 logs {
			prefix bench
			host bench-node
			spool_dir $work/spool
			roll_interval 10s
		}
	}
	respond "ok"
}
:${port[none]} {
	respond "ok"
}
CADDY
start_caddy "$work/Caddyfile"
for v in "${variants[@]}"; do wait_port "${port[$v]}"; done

run_rounds file s3 none

# Every request to :s3 is one access-log line; after a clean stop
# (SIGTERM: the spool is flushed) they are all in the bucket. The warm-up
# requests are logged too, so the bucket holds a few more lines than the
# measured rounds sent.
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$caddy_pid/status")
kill -TERM "$caddy_pid"
wait "$caddy_pid" 2>/dev/null || true
lines_s3=$(find "$work/s3/logs" -name '*.log.gz' -exec zcat {} + | wc -l)
echo "s3 variant: ${requests[s3]} requests in the measured rounds; the bucket holds $lines_s3 lines in $(find "$work/s3/logs" -name '*.log.gz' | wc -l) objects; spool files left: $(find "$work/spool" -name '*.log*' | wc -l)"
echo "caddy-lb peak RSS (VmHWM): $((hwm / 1024)) MiB"
