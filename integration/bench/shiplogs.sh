#!/usr/bin/env bash
# Logs of every server (BENCHMARKS.md): the ship_logs file shipper's
# throughput and memory, and `caddy lb-logs search` against
# `zcat | jq 'select(.status >= 500)'` over the same gzipped objects.
#
# 1. Shipper: an application log of SHIP_SIZE (plain lines, a JSON line
#    in ten) is shipped by the built binary, pinned to one core, to a
#    file asset store: the time until every byte is read into the spool,
#    and until every file is gzipped and stored; its peak RSS. `gzip -1`
#    of the same file on the same core is the reference (the shipper
#    gzips at that level).
# 2. Search: SEARCH_GZ of gzipped access-log objects of 4 nodes, in the
#    default key layout; lb-logs search --where 'status>=500' and
#    find | xargs zcat | jq -c 'select(.status >= 500)' in interleaved
#    rounds (both on both cores: the pipeline is two processes), wall
#    time and peak RSS; both must print the same number of lines.
#
# Env: ROUNDS (3), SHIP_SIZE (512MiB), SEARCH_GZ (1GiB), ONLY (shipper or
# search: run one part).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CADDY=${CADDY:-$root/bin/caddy}
ROUNDS=${ROUNDS:-3}
SHIP_SIZE=${SHIP_SIZE:-512MiB}
SEARCH_GZ=${SEARCH_GZ:-1GiB}
for cmd in jq zcat gzip curl /usr/bin/time "$CADDY"; do
	command -v "$cmd" >/dev/null || { echo "missing $cmd (run make deps build)" >&2; exit 1; }
done
pin=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
	pin="taskset -c $(($(nproc) - 1))"
fi

work=$(mktemp -d)
caddy_pid=""
cleanup() {
	[ -n "$caddy_pid" ] && kill -9 "$caddy_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
calc() { awk "BEGIN {print $1}"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
spread() { sort -g | awk '{a[NR]=$1} END {printf "%s-%s", a[1], a[NR]}'; }

metric() { # sum of a series on the admin endpoint
	curl -s "http://$admin/metrics" | awk -v n="$1" '$1 ~ "^"n"({|$)" {s+=$NF} END {print s+0}'
}

(cd "$root" && go build -o "$work/loggen" ./integration/bench/loggen)

ONLY=${ONLY:-}
if [ "$ONLY" != search ]; then
echo "== shipper: $SHIP_SIZE of application log lines, caddy-lb pinned to one core =="
mkdir -p "$work/logs"
"$work/loggen" file -size "$SHIP_SIZE" -out "$work/logs/app.log"
bytes=$(stat -c %s "$work/logs/app.log")
read_rates=() ship_rates=() rss=() gzip_rates=()
for round in $(seq "$ROUNDS"); do
	rm -rf "$work/store" "$work/data" && mkdir -p "$work/store"
	admin=127.0.0.1:$((21000 + RANDOM % 5000))
	cat >"$work/Caddyfile" <<-EOF
	{
		admin $admin
		persist_config off
		storage file_system $work/data/storage
		asset_store logs file $work/store
		ship_logs {
			store logs
			files $work/logs/*.log
			name app
			host web-1
			roll_interval 1s
		}
	}
	EOF
	t0=$(now)
	XDG_DATA_HOME=$work/data $pin "$CADDY" run --config "$work/Caddyfile" >"$work/caddy.log" 2>&1 &
	caddy_pid=$!
	until [ "$(metric caddylb_logship_file_read_bytes_total 2>/dev/null || echo 0)" = "$bytes" ]; do sleep 0.05; done
	t_read=$(now)
	until [ "$(metric caddylb_logship_spool_bytes)" = 0 ] && [ "$(metric caddylb_logship_shipped_files_total)" != 0 ]; do sleep 0.05; done
	t_ship=$(now)
	rss+=("$(awk '/VmHWM/ {print $2/1024}' /proc/$caddy_pid/status)")
	kill "$caddy_pid"; wait "$caddy_pid" || true; caddy_pid=""
	stored=$(find "$work/store" -name '*.log.gz' -not -path '*/.caddylb-*' -print0 | xargs -0 cat | gzip -dc | wc -l)
	lines=$(wc -l <"$work/logs/app.log")
	[ "$stored" = "$lines" ] || { echo "round $round: $stored lines stored of $lines" >&2; exit 1; }
	g0=$(now); $pin gzip -1 -c "$work/logs/app.log" >/dev/null; g1=$(now)
	read_rates+=("$(calc "$bytes / 1048576 / ($t_read - $t0)")")
	ship_rates+=("$(calc "$bytes / 1048576 / ($t_ship - $t0)")")
	gzip_rates+=("$(calc "$bytes / 1048576 / ($g1 - $g0)")")
	printf 'round %d: read %.0f MB/s, stored %.0f MB/s, peak RSS %.0f MiB; gzip -1 %.0f MB/s\n' "$round" "${read_rates[-1]}" "${ship_rates[-1]}" "${rss[-1]}" "${gzip_rates[-1]}"
done
printf 'shipper: read into the spool %.0f MB/s (%s), gzipped and stored %.0f MB/s (%s), peak RSS %.0f MiB (%s); gzip -1 alone %.0f MB/s\n' \
	"$(printf '%s\n' "${read_rates[@]}" | median)" "$(printf '%.0f\n' "${read_rates[@]}" | spread)" \
	"$(printf '%s\n' "${ship_rates[@]}" | median)" "$(printf '%.0f\n' "${ship_rates[@]}" | spread)" \
	"$(printf '%s\n' "${rss[@]}" | median)" "$(printf '%.0f\n' "${rss[@]}" | spread)" \
	"$(printf '%s\n' "${gzip_rates[@]}" | median)"
rm -rf "$work/logs" "$work/store" "$work/data"
fi
[ "$ONLY" != shipper ] || exit 0

echo "== search: $SEARCH_GZ of gzipped access logs, 4 nodes =="
"$work/loggen" objects -gzsize "$SEARCH_GZ" -root "$work/search" -hosts 4
gz=$(find "$work/search" -name '*.log.gz' -print0 | du -cb --files0-from=- | tail -1 | cut -f1)
printf 'objects: %d, %.0f MiB gzipped\n' "$(find "$work/search" -name '*.log.gz' | wc -l)" "$(calc "$gz / 1048576")"
cat >"$work/search.Caddyfile" <<-EOF
{
	asset_store logs file $work/search
}
EOF
ours=() theirs=() ratios=() our_rss=() their_rss=()
run_ours() {
	/usr/bin/time -f '%e %M' -o "$work/t" "$CADDY" lb-logs search --config "$work/search.Caddyfile" --prefix prod/access --since 4h --where 'status>=500' 2>/dev/null | wc -l >"$work/n"
	read -r secs kib <"$work/t"; ours+=("$secs"); our_rss+=("$(calc "$kib / 1024")"); n_ours=$(cat "$work/n")
}
run_theirs() {
	# jq is the process that holds memory; its RSS is reported.
	local t0 t1
	t0=$(now)
	find "$work/search" -name '*.log.gz' -print0 | xargs -0 zcat | /usr/bin/time -f '%M' -o "$work/m" jq -c 'select(.status >= 500)' | wc -l >"$work/n"
	t1=$(now)
	theirs+=("$(calc "$t1 - $t0")"); their_rss+=("$(calc "$(cat "$work/m") / 1024")"); n_theirs=$(cat "$work/n")
}
for round in $(seq "$ROUNDS"); do
	if ((round % 2)); then run_ours; run_theirs; else run_theirs; run_ours; fi
	[ "$n_ours" = "$n_theirs" ] || { echo "round $round: lb-logs printed $n_ours lines, jq $n_theirs" >&2; exit 1; }
	ratios+=("$(calc "${theirs[-1]} / ${ours[-1]}")")
	printf 'round %d: lb-logs search %.1f s (%.0f MiB), zcat | jq %.1f s (jq %.0f MiB), %d lines each: %.1fx\n' "$round" "${ours[-1]}" "${our_rss[-1]}" "${theirs[-1]}" "${their_rss[-1]}" "$n_ours" "${ratios[-1]}"
done
printf 'search: lb-logs %.1f s, %.0f MB/s of gzip (peak RSS %.0f MiB); zcat | jq %.1f s; speed-up %.1fx (%s)\n' \
	"$(printf '%s\n' "${ours[@]}" | median)" "$(calc "$gz / 1048576 / $(printf '%s\n' "${ours[@]}" | median)")" \
	"$(printf '%s\n' "${our_rss[@]}" | median)" "$(printf '%s\n' "${theirs[@]}" | median)" \
	"$(printf '%s\n' "${ratios[@]}" | median)" "$(printf '%.1f\n' "${ratios[@]}" | spread)"
