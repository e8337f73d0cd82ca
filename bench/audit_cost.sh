#!/usr/bin/env bash
# Measures what query auditing costs: the authority-lens query rate of one stemedb-api
# binary with auditing on (STEMEDB_AUDIT_RETENTION_DAYS=30) and off (0), on the same
# preloaded dataset.
#
#   bench/audit_cost.sh STEMEDB_API_BINARY [LOADGEN_BINARY]
#
# Environment: AUDIT_RUNS (timed runs per setting, default 5), AUDIT_REQUESTS
# (requests per run, default 200000), AUDIT_SUBJECTS (preloaded subjects with 10
# claims each, default 10000), AUDIT_CLIENTS (connections, default 64). Each run is
# one bounded h2load pass over HTTP/1.1 (--h1) that cycles through 10,000 random
# subjects drawn with a fixed seed. The script prints one "run" line per timed run, with
# the request rate and the CPU time stemedb-api used per request (user plus system time
# of all its threads, from /proc/PID/stat). The CPU time depends less on other work on
# a shared machine than the rate does. A "summary" line per setting gives the median,
# minimum and maximum of both.
set -euo pipefail

api=${1:?usage: bench/audit_cost.sh STEMEDB_API_BINARY [LOADGEN_BINARY]}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
loadgen=${2:-$root/build/bin/loadgen}
runs=${AUDIT_RUNS:-5}
requests=${AUDIT_REQUESTS:-200000}
subjects=${AUDIT_SUBJECTS:-10000}
clients=${AUDIT_CLIENTS:-64}
work=$(mktemp -d /tmp/stemedb-audit-cost.XXXXXX)
server_pid=

fail() {
	echo "audit_cost: $*" >&2
	exit 1
}

free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_server() {
	[ -n "$server_pid" ] || return 0
	kill -TERM "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=
}

cleanup() {
	stop_server
	rm -rf "$work"
}
trap cleanup EXIT

# start_server RETENTION_DAYS starts stemedb-api on the shared data directory.
start_server() {
	port=$(free_port)
	STEMEDB_DATA_DIR="$work/data" STEMEDB_API_LISTEN="127.0.0.1:$port" \
		STEMEDB_AUDIT_RETENTION_DAYS="$1" STEMEDB_LOG_LEVEL=warn \
		"$api" >>"$work/stemedb.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 1 600); do
		if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/ready")" = 200 ]; then
			return 0
		fi
		kill -0 "$server_pid" 2>/dev/null || fail "stemedb-api exited: $(tail -n 5 "$work/stemedb.log")"
		sleep 0.1
	done
	fail "stemedb-api was not ready within 60 s"
}

write_uris() {
	/usr/bin/python3 -c '
import random, sys
rng = random.Random(7919)
for _ in range(10000):
    print("http://127.0.0.1:%s/v1/query?subject=bench%%2Fq%%2F%d&predicate=bench_claim&lens=authority"
          % (sys.argv[1], rng.randrange(int(sys.argv[2]))))
' "$port" "$subjects" >"$work/uris.txt"
}

# cpu_ticks prints the user plus system clock ticks that stemedb-api has used so far.
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$server_pid/stat"
}

# run_h2load prints the request rate of one pass and the server's CPU microseconds per
# request.
run_h2load() {
	local out before after rate
	before=$(cpu_ticks)
	out=$(h2load -n "$requests" -c "$clients" -t 2 --h1 -i "$work/uris.txt" 2>&1) ||
		fail "h2load failed: $(tail -n 4 <<<"$out")"
	after=$(cpu_ticks)
	grep -q "^status codes: $requests 2xx" <<<"$out" ||
		fail "h2load saw failed requests: $(grep -E '^(requests|status codes):' <<<"$out" | tr '\n' ' ')"
	rate=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
	echo "$rate $(awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
		'BEGIN { printf "%.2f", ticks * 1e6 / hz / n }')"
}

# measure NAME RETENTION_DAYS runs a warm-up pass and the timed runs of one setting.
measure() {
	local name=$1 results=() result
	start_server "$2"
	write_uris
	run_h2load >/dev/null
	for run in $(seq 1 "$runs"); do
		result=$(run_h2load)
		echo "run $name $run rate=${result% *} cpu_us_per_query=${result#* }"
		results+=("$result")
	done
	stop_server
	printf '%s\n' "${results[@]}" | /usr/bin/python3 -c '
import statistics, sys
rows = [line.split() for line in sys.stdin]
rates = [float(row[0]) for row in rows]
cpu = [float(row[1]) for row in rows]
print("summary %s rate median=%.0f min=%.0f max=%.0f; cpu_us_per_query median=%.1f min=%.1f max=%.1f; runs=%d"
      % (sys.argv[1], statistics.median(rates), min(rates), max(rates),
         statistics.median(cpu), min(cpu), max(cpu), len(rows)))
' "$name"
}

command -v h2load >/dev/null || fail "h2load is missing; install nghttp2-client"
[ -x "$api" ] || fail "$api is not an executable"
[ -x "$loadgen" ] || fail "$loadgen is not an executable; run make"

mkdir -p "$work/data"
start_server 0
"$loadgen" preload --port "$port" --subjects "$subjects" --per-subject 10 >/dev/null 2>>"$work/loadgen.log" ||
	fail "preload failed: $(tail -n 3 "$work/loadgen.log")"
stop_server

measure audit_on 30
measure audit_off 0
