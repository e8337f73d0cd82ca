#!/usr/bin/env bash
# Runs the StemeDB benchmarks side by side with a PostgreSQL 15 peer and the physical
# limits of this machine, then regenerates docs/benchmarks.md. Called by `make bench`:
#
#   bench/run.sh BUILD_DIR
#
# Everything runs on this machine: stemedb-api listens on two free 127.0.0.1 ports (HTTP/1.1
# and h2c), and PostgreSQL listens only on a Unix socket inside the work directory. Every load step is
# bounded in count and time. The trap stops both servers and removes the work directory
# on any exit.
#
# Knobs (environment): BENCH_RUNS (measured runs per figure, default 5), BENCH_DIR
# (parent of the work directory and so the disk under test, default /tmp),
# BENCH_SUBJECTS (query dataset subjects, 10 claims each, default 100000),
# BENCH_SINGLE_COUNT (claims per single-assert run, default 30000), BENCH_BATCH_COUNT
# (claims per batch run, default 100000), BENCH_SECONDS (length of each timed wrk and
# pgbench run, default 10), BENCH_KEEP=1 (keep the work directory for inspection),
# BENCH_OUTPUT (page to write, default docs/benchmarks.md), BENCH_VIEW_RUNS (measured
# runs of the skeptic, layered, vote-lens and HTTP/2 figures, default 3),
# BENCH_H2_REQUESTS (requests per h2load run, default 100000), BENCH_WARMUP_PER_AGENT
# (untimed assertions per loadgen agent before the protection runs, default 50, the
# STEMEDB_POW_ESTABLISHED_ASSERTIONS default).
#
# BENCH_ONLY=protection runs only the protection section (two fresh nodes, BENCH_RUNS
# timed runs each of BENCH_SINGLE_COUNT single asserts and BENCH_BATCH_COUNT batched
# ones, a few minutes with the defaults) and replaces only that section of the page,
# keeping every other section and its numbers. It needs neither PostgreSQL nor perf.
#
# The main StemeDB rows run with every protection layer off (STEMEDB_*_ENABLED=false), so
# they stay comparable with runs from before the layers existed. The protection section
# measures ingest with every layer off next to every layer on.
set -euo pipefail

build=${1:-build}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case $build in
/*) bin=$build/bin ;;
*) bin=$root/$build/bin ;;
esac

runs=${BENCH_RUNS:-5}
subjects=${BENCH_SUBJECTS:-100000}
per_subject=10
single_count=${BENCH_SINGLE_COUNT:-30000}
batch_count=${BENCH_BATCH_COUNT:-100000}
batch_size=500
batch_clients=4
clients=64
seconds=${BENCH_SECONDS:-10}
view_runs=${BENCH_VIEW_RUNS:-3}
# Percent of the query dataset's subjects that get one to three signed votes.
vote_percent=10
h2_requests=${BENCH_H2_REQUESTS:-100000}
# Ten streams per connection is where HTTP/2 multiplexing differs from HTTP/1.1. Those
# runs get fewer requests and two runs only, because their forwarded requests can wait
# tens of seconds (the page explains why).
h2_streams=10
h2_mux_requests=$((h2_requests / 5))
h2_mux_runs=2
# Upper bound on one h2load run, in seconds, on top of its bounded request count.
h2_timeout=90
output=${BENCH_OUTPUT:-$root/docs/benchmarks.md}
pg_bin=/usr/lib/postgresql/15/bin
python=/usr/bin/python3

# Debian packages this script needs on top of scripts/deps.sh.
bench_packages=(wrk nghttp2-client postgresql-15 postgresql-client-15 curl linux-perf)

only=${BENCH_ONLY:-}
warmup_per_agent=${BENCH_WARMUP_PER_AGENT:-50}
# At most this many one-claim-per-agent rounds follow the warm-up until no agent is
# asked for a proof of work.
warmup_check_rounds=10
# Every protection layer off: the settings of the main StemeDB rows and of the "off"
# node of the protection section.
layers_off=(STEMEDB_AUTH_ENABLED=false STEMEDB_RATE_LIMIT_ENABLED=false
	STEMEDB_CIRCUIT_BREAKER_ENABLED=false STEMEDB_ADMISSION_ENABLED=false
	STEMEDB_QUOTA_ENABLED=false STEMEDB_CONTENT_DEFENSE_ENABLED=false
	STEMEDB_MAX_CONNECTIONS_PER_CLIENT=0)
# The quota of the "on" node: the maximum STEMEDB_QUOTA_TOKENS, far above what the
# bench load spends, so that the section measures the accounting, not rejections.
protection_quota_tokens=1000000000
# Connections per client address on the "on" node: every loadgen client connects from
# 127.0.0.1, so the limit is set above its 64 clients instead of the default 64.
protection_connections_per_client=256

work=""
server_pid=""
# Process ids of the protection section's nodes, stopped by cleanup.
node_pids=()
pg_data=""
started=$(date +%s)

log() {
	echo "bench: $*" >&2
}

fail() {
	log "error: $*"
	exit 1
}

# ---- Setup and teardown ------------------------------------------------------------

install_missing_packages() {
	local missing=() package
	for package in "${bench_packages[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
			missing+=("$package")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		fail "missing packages: ${missing[*]}; install them with apt-get as root and run make bench again"
	fi
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

check_tools() {
	local tool
	case $only in
	"") ;;
	protection)
		for tool in "$bin/stemedb-api" "$bin/loadgen" "$bin/stemedb-ctl" /usr/bin/curl "$python"; do
			[ -x "$tool" ] || fail "$tool is missing or not executable; run make first"
		done
		return 0
		;;
	*) fail "invalid BENCH_ONLY \"$only\": use protection, or leave it unset for the full run" ;;
	esac
	install_missing_packages
	for tool in "$bin/stemedb-api" "$bin/loadgen" "$bin/physical_limits" "$bin/stemedb-ctl" \
		"$pg_bin/initdb" "$pg_bin/pg_ctl" "$pg_bin/pgbench" "$pg_bin/psql" /usr/bin/wrk \
		/usr/bin/h2load "$python"; do
		[ -x "$tool" ] || fail "$tool is missing or not executable; run make and make deps first"
	done
	[ "$(id -u)" -eq 0 ] || fail "the PostgreSQL peer runs as the postgres user through runuser, which needs root"
	id postgres >/dev/null 2>&1 || fail "the postgres user does not exist; reinstall postgresql-15"
}

stop_stemedb() {
	[ -n "$server_pid" ] || return 0
	kill -TERM "$server_pid" 2>/dev/null || true
	local i
	for i in $(seq 1 300); do
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$server_pid" 2>/dev/null; then
		log "stemedb-api (pid $server_pid) did not stop within 30 s; sending SIGKILL"
		kill -KILL "$server_pid" 2>/dev/null || true
	fi
	wait "$server_pid" 2>/dev/null || true
	server_pid=""
}

stop_postgres() {
	[ -n "$pg_data" ] || return 0
	runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" stop -m fast -w -t 60 >/dev/null 2>&1 ||
		log "pg_ctl stop failed for $pg_data; see $work/pg/postgres.log"
	pg_data=""
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	stop_stemedb
	stop_nodes
	stop_postgres
	if [ -n "$work" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
		rm -rf "$work"
	elif [ -n "$work" ]; then
		log "work directory kept: $work"
	fi
	exit "$status"
}

free_port() {
	"$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- Results ----------------------------------------------------------------------

# record METRIC RUN VALUE appends one measurement to the results table.
record() {
	printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$work/results.tsv"
}

meta() {
	printf '%s\t%s\n' "$1" "$2" >>"$work/meta.tsv"
}

# calc EXPRESSION prints the value of an arithmetic expression with three decimals.
calc() {
	awk "BEGIN { printf \"%.3f\", $1 }"
}

# field KEY LINE prints the value of KEY in a "key=value key=value" line.
field() {
	sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"
}

# ---- Physical limits --------------------------------------------------------------

bench_physical() {
	local run line
	for run in $(seq 1 "$runs"); do
		line=$("$bin/physical_limits" verify --seconds 2) || fail "physical_limits verify failed"
		record verify_per_sec "$run" "$(field verify_per_sec "$line")"
		log "physical run $run: $line"
		line=$("$bin/physical_limits" fsync --dir "$work" --count 1000 --size 4096) ||
			fail "physical_limits fsync failed"
		record fsync_p50_us "$run" "$(field fsync_p50_us "$line")"
		record fsync_p99_us "$run" "$(field fsync_p99_us "$line")"
		log "physical run $run: $line"
	done
}

# ---- StemeDB -------------------------------------------------------------------------

# wait_ready PID PORT LOG waits up to 60 s for the stemedb-api PID to reply 200 to /v1/ready.
wait_ready() {
	local pid=$1 ready_port=$2 server_log=$3
	for _ in $(seq 1 600); do
		if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ready_port/v1/ready")" = 200 ]; then
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || fail "stemedb-api exited during startup: $(tail -n 5 "$server_log")"
		sleep 0.1
	done
	fail "stemedb-api was not ready within 60 s: $(tail -n 5 "$server_log")"
}

# Starts the node of the main rows with every protection layer off.
start_stemedb() {
	port=$(free_port)
	# h2c is served on the API port next to HTTP/1.1. Every load client connects from
	# 127.0.0.1, so the per-client connection limit is off.
	h2_port=$port
	mkdir -p "$work/stemedb"
	(
		export "${layers_off[@]}"
		exec env STEMEDB_DATA_DIR="$work/stemedb" STEMEDB_API_LISTEN="127.0.0.1:$port" \
			STEMEDB_DURABILITY=immediate STEMEDB_LOG_LEVEL=warn "$bin/stemedb-api"
	) >>"$work/stemedb.log" 2>&1 &
	server_pid=$!
	wait_ready "$server_pid" "$port" "$work/stemedb.log"
	log "stemedb-api ready on 127.0.0.1:$port for HTTP/1.1 and h2c (pid $server_pid)"
}

# run_loadgen NAME RUN ARGS... runs one loadgen pass and records rate and latency.
run_loadgen() {
	local name=$1 run=$2 line
	shift 2
	line=$("$bin/loadgen" "$@" --port "$port" 2>>"$work/loadgen.log" | grep '^result ') ||
		fail "loadgen $name run $run failed: $(tail -n 3 "$work/loadgen.log")"
	log "$name run $run: $line"
	record "${name}_rate" "$run" "$(field items_per_sec "$line")"
	record "${name}_p50_ms" "$run" "$(field p50_ms "$line")"
	record "${name}_p99_ms" "$run" "$(field p99_ms "$line")"
}

bench_stemedb_writes() {
	local run
	metrics_snapshot start
	for run in $(seq 1 "$runs"); do
		run_loadgen stemedb_single "$run" single --count "$single_count" --clients "$clients" \
			--tag "s$run" --max-seconds 60
	done
	metrics_snapshot single
	for run in $(seq 1 "$runs"); do
		run_loadgen stemedb_batch "$run" batch --count "$batch_count" --batch-size "$batch_size" \
			--clients "$batch_clients" --tag "b$run" --max-seconds 120
	done
	metrics_snapshot batch
	metrics_delta stemedb_single "$work/metrics-start.txt" "$work/metrics-single.txt"
	metrics_delta stemedb_batch "$work/metrics-single.txt" "$work/metrics-batch.txt"
}

# Loads subjects x 10 claims through the batch endpoint and writes the same rows as
# COPY text for PostgreSQL.
bench_stemedb_preload() {
	local line begin
	begin=$(date +%s.%N)
	line=$("$bin/loadgen" preload --port "$port" --subjects "$subjects" --per-subject "$per_subject" \
		--batch-size "$batch_size" --clients "$batch_clients" --max-seconds 900 \
		--copy-out "$work/preload.copy" 2>>"$work/loadgen.log" | grep '^result ') ||
		fail "preload failed: $(tail -n 3 "$work/loadgen.log")"
	log "preload: $line"
	record stemedb_preload_rate 1 "$(field items_per_sec "$line")"
	record stemedb_preload_seconds 1 "$(calc "$(date +%s.%N) - $begin")"
}

# Checks that a query on the preloaded dataset returns a winner and all 10 claims.
check_stemedb_dataset() {
	local body
	body=$(curl -s "http://127.0.0.1:$port/v1/query?subject=bench%2Fq%2F42&predicate=bench_claim&lens=authority")
	"$python" -c '
import json, sys
doc = json.loads(sys.argv[1])
count = doc.get("candidate_count")
if doc.get("winner") is None or count != int(sys.argv[2]):
    sys.exit("bench: query check failed: winner %r, candidate_count %r" % (doc.get("winner"), count))
' "$body" "$per_subject" || fail "the preloaded dataset does not answer as generated: ${body:0:300}"
}

# run_wrk NAME RUN DURATION [ENDPOINT [LENS]] runs one read load: /v1/query with the
# authority lens unless ENDPOINT (query, skeptic or layered) and LENS select another.
run_wrk() {
	local name=$1 run=$2 duration=$3 line
	shift 3
	line=$(wrk -t2 -c"$clients" -d"${duration}s" --timeout 10s -s "$root/bench/query.lua" \
		"http://127.0.0.1:$port" -- "$subjects" "$@" | grep '^wrk_result ') || fail "wrk failed"
	[ "$(field status_errors "$line")" = 0 ] && [ "$(field socket_errors "$line")" = 0 ] ||
		fail "wrk saw errors: $line"
	[ "$run" = warmup ] && return 0
	log "$name run $run: $line"
	record "${name}_rate" "$run" "$(field requests_per_sec "$line")"
	record "${name}_p50_ms" "$run" "$(field p50_ms "$line")"
	record "${name}_p99_ms" "$run" "$(field p99_ms "$line")"
	record "${name}_max_ms" "$run" "$(field max_ms "$line")"
}

bench_stemedb_queries() {
	local run
	check_stemedb_dataset
	run_wrk stemedb_query warmup 3
	for run in $(seq 1 "$runs"); do
		run_wrk stemedb_query "$run" "$seconds"
	done
	meta stemedb_assertions "$(curl -s "http://127.0.0.1:$port/v1/health" |
		"$python" -c 'import json, sys; print(json.load(sys.stdin).get("assertions_count", "unknown"))')"
}

# check_json NAME URL PYTHON_CONDITION fails the run unless the JSON reply of URL meets
# the condition, a Python expression over the parsed reply `doc`.
check_json() {
	local name=$1 url=$2 condition=$3 body
	body=$(curl -s "$url")
	"$python" -c '
import json, sys
doc = json.loads(sys.argv[1])
if not eval(sys.argv[2]):
    sys.exit(1)
' "$body" "$condition" || fail "the $name check failed: ${body:0:300}"
}

# measure_reads NAME RUNS ENDPOINT [LENS] runs a 3 s warm-up and RUNS timed wrk runs.
measure_reads() {
	local name=$1 count=$2 run
	shift 2
	run_wrk "$name" warmup 3 "$@"
	for run in $(seq 1 "$count"); do
		run_wrk "$name" "$run" "$seconds" "$@"
	done
}

# The skeptic and layered views on the same dataset and the same random subjects.
bench_stemedb_views() {
	local url="http://127.0.0.1:$port/v1" params="subject=bench%2Fq%2F42&predicate=bench_claim"
	check_json skeptic "$url/skeptic?$params" \
		"doc['candidate_count'] == $per_subject and doc['claim_count'] >= 1 and doc['status'] != 'no_data'"
	check_json layered "$url/layered?$params" \
		"doc['candidate_count'] == $per_subject and doc['answer'] is not None and len(doc['tiers']) >= 1"
	measure_reads stemedb_skeptic "$view_runs" skeptic
	measure_reads stemedb_layered "$view_runs" layered
}

# Loads signed votes for vote_percent percent of the subjects, checks that the vote lens
# counts them, then measures the vote lens on the same random subjects as the others.
bench_stemedb_votes() {
	local out line sample
	out=$("$bin/loadgen" votes --port "$port" --subjects "$subjects" --per-subject "$per_subject" \
		--vote-percent "$vote_percent" --clients "$batch_clients" --max-seconds 300 \
		2>>"$work/loadgen.log") || fail "loading votes failed: $(tail -n 3 "$work/loadgen.log")"
	line=$(grep '^result ' <<<"$out")
	log "votes: $line"
	record stemedb_votes_rate 1 "$(field items_per_sec "$line")"
	meta votes_loaded "$(field created "$line")"
	line=$(grep '^votes ' <<<"$out")
	meta voted_subjects "$(field voted_subjects "$line")"
	sample=$(field sample_voted_subject "$line")
	[ "$sample" -ge 0 ] || fail "loadgen votes picked no subject; raise vote_percent"
	check_json "vote lens" \
		"http://127.0.0.1:$port/v1/query?subject=bench%2Fq%2F$sample&predicate=bench_claim&lens=vote" \
		"doc['winner'] is not None and any(c['score'] != 0 for c in doc['candidates'])"
	measure_reads stemedb_vote "$view_runs" query vote
}

# Writes the URIs h2load cycles through: 10,000 random subjects of the query dataset
# with the authority lens, drawn with a fixed seed so that every run reads the same ones.
write_h2_uris() {
	"$python" -c '
import random, sys
rng = random.Random(7919)
for _ in range(10000):
    print("http://127.0.0.1:%s/v1/query?subject=bench%%2Fq%%2F%d&predicate=bench_claim&lens=authority"
          % (sys.argv[1], rng.randrange(int(sys.argv[2]))))
' "$1" "$subjects" >"$2"
}

# run_h2load NAME RUN PROTOCOL STREAMS REQUESTS runs one bounded h2load pass over 64
# connections; PROTOCOL is h1 (HTTP/1.1) or h2c (HTTP/2 with prior knowledge), both on
# the API port. A run that fails or times out is logged and left out of the figures.
run_h2load() {
	local name=$1 run=$2 protocol=$3 streams=$4 requests=$5 uris=$work/uris-$3.txt
	local out rate latency args=(-n "$requests" -c "$clients" -m "$streams" -t 2)
	[ "$protocol" = h1 ] && args+=(--h1)
	[ -f "$uris" ] || write_h2_uris "$([ "$protocol" = h1 ] && echo "$port" || echo "$h2_port")" "$uris"
	rm -f "$work/h2load.log"
	if ! out=$(timeout "$h2_timeout" h2load "${args[@]}" -i "$uris" --log-file="$work/h2load.log" 2>&1); then
		log "$name run $run: h2load failed or ran past $h2_timeout s: $(tail -n 4 <<<"$out" | tr '\n' ' ')"
		record "${name}_failed" "$run" 1
		return 0
	fi
	grep -q "^requests: $requests total, $requests started, $requests done, $requests succeeded" <<<"$out" &&
		grep -q "^status codes: $requests 2xx" <<<"$out" ||
		fail "h2load $name run $run saw failed requests: $(grep -E '^(requests|status codes):' <<<"$out" | tr '\n' ' ')"
	[ "$run" = warmup ] && return 0
	rate=$(sed -n 's/^finished in [0-9.]*m\?s, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
	latency=$("$python" "$root/bench/report.py" h2load-latency "$work/h2load.log")
	log "$name run $run: requests_per_sec=$rate $latency max_$(grep '^time for request:' <<<"$out" | awk '{print $5}')"
	record "${name}_rate" "$run" "$rate"
	record "${name}_p50_ms" "$run" "$(field p50_ms "$latency")"
	record "${name}_p99_ms" "$run" "$(field p99_ms "$latency")"
	record "${name}_max_ms" "$run" "$(field max_ms "$latency")"
}

# The authority query through h2load over HTTP/1.1 and over h2c. The single-stream runs
# alternate so that both see the same machine; the multiplexed runs come last.
bench_stemedb_http2() {
	local run
	run_h2load stemedb_h1 warmup h1 1 $((h2_requests / 5))
	run_h2load stemedb_h2c warmup h2c 1 $((h2_requests / 5))
	for run in $(seq 1 "$view_runs"); do
		run_h2load stemedb_h1 "$run" h1 1 "$h2_requests"
		run_h2load stemedb_h2c "$run" h2c 1 "$h2_requests"
	done
	for run in $(seq 1 "$h2_mux_runs"); do
		run_h2load stemedb_h2c_mux "$run" h2c "$h2_streams" "$h2_mux_requests"
	done
	# Server-side connections of the API port that outlive every client: a sign of
	# connections the front left open.
	sleep 1
	meta h1_connections_after_mux "$(ss -Htn state established "( sport = :$port )" | wc -l)"
}

# profile NAME DELAY_MS COMMAND... samples every CPU with perf for 4 s, starting
# DELAY_MS after COMMAND starts so that the driver's request generation is left out.
# Skipped when perf cannot sample on this machine.
profile() {
	local name=$1 delay=$2 data=$work/perf-$1.data
	shift 2
	if ! perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
		log "perf cannot sample here; skipping the $name profile"
		return 0
	fi
	perf record -a -D "$delay" -e cpu-clock -F 499 -o "$data" -- sleep $((delay / 1000 + 5)) >/dev/null 2>&1 &
	local perf_pid=$!
	# A second recording of the server alone, with DWARF call graphs, attributes time to
	# the StemeDB functions that spend it, callees included.
	perf record -p "$server_pid" -D "$delay" -e cpu-clock -F 199 --call-graph dwarf,16384 \
		-o "$data.calls" -- sleep $((delay / 1000 + 3)) >/dev/null 2>&1 &
	local calls_pid=$!
	"$@" >/dev/null 2>&1 || log "the $name profiling load failed; the profile may be partial"
	wait "$perf_pid" || true
	wait "$calls_pid" || true
	# The benchmarked server's share comes from its process id, because other programs
	# of the same name (a test suite's own stemedb-api, say) may run at the same time.
	perf report -i "$data" --stdio --sort comm --percent-limit 1 2>/dev/null |
		grep -v '^#' | grep -v '^$' >"$work/profile-$name-comm.txt" || true
	perf report -i "$data" --stdio --pid "$server_pid" --sort comm 2>/dev/null |
		grep -v '^#' | grep -v '^$' >"$work/profile-$name-server.txt" || true
	perf report -i "$data.calls" --stdio --no-children --sort dso -g none --percent-limit 1 \
		2>/dev/null | grep -v '^#' | grep -v '^$' >"$work/profile-$name-dso.txt" || true
	perf report -i "$data.calls" --stdio --no-children --sort dso,sym -g none --percent-limit 1 \
		2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 15 >"$work/profile-$name-sym.txt" || true
	perf report -i "$data.calls" --stdio --children --sort dso,sym -g none --percent-limit 2 2>/dev/null |
		grep -E '^ +[0-9.]+% +[0-9.]+% +stemedb-api ' | head -n 14 >"$work/profile-$name-calls.txt" || true
	rm -f "$data" "$data.calls"
}

profile_stemedb() {
	profile single 2000 "$bin/loadgen" single --port "$port" --count 50000 --clients "$clients" \
		--tag profile-single --max-seconds 10
	profile batch 3000 "$bin/loadgen" batch --port "$port" --count 80000 --batch-size "$batch_size" \
		--clients "$batch_clients" --tag profile-batch --max-seconds 10
	profile query 1000 wrk -t2 -c"$clients" -d6s -s "$root/bench/query.lua" "http://127.0.0.1:$port" -- "$subjects"
	profile skeptic 1000 wrk -t2 -c"$clients" -d6s -s "$root/bench/query.lua" "http://127.0.0.1:$port" -- \
		"$subjects" skeptic
	profile layered 1000 wrk -t2 -c"$clients" -d6s -s "$root/bench/query.lua" "http://127.0.0.1:$port" -- \
		"$subjects" layered
	profile vote 1000 wrk -t2 -c"$clients" -d6s -s "$root/bench/query.lua" "http://127.0.0.1:$port" -- \
		"$subjects" query vote
}

# metrics_delta NAME BEFORE AFTER records the server's own view of the group commit
# between two /metrics snapshots: assertions per WAL fdatasync and the mean fdatasync time.
metrics_delta() {
	local name=$1 before=$2 after=$3
	awk -v name="$name" '
		FNR == NR { first[$1] = $2; next }
		{ delta[$1] = $2 - first[$1] }
		END {
			syncs = delta["stemedb_wal_fsync_latency_seconds_count"]
			if (syncs > 0) {
				printf "%s_wal_batch_avg\t1\t%.2f\n", name, delta["stemedb_wal_batch_size_sum"] / delta["stemedb_wal_batch_size_count"]
				printf "%s_fsync_avg_us\t1\t%.1f\n", name, 1e6 * delta["stemedb_wal_fsync_latency_seconds_sum"] / syncs
				printf "%s_fsyncs\t1\t%d\n", name, syncs
			}
		}' "$before" "$after" >>"$work/results.tsv"
}

metrics_snapshot() {
	curl -s "http://127.0.0.1:$port/metrics" |
		grep -E '^stemedb_wal_(batch_size|fsync_latency_seconds)_(sum|count) ' >"$work/metrics-$1.txt" ||
		log "the /metrics snapshot $1 lacks the WAL batch and fdatasync series"
}

# ---- Protection cost --------------------------------------------------------------------

# start_node NAME SETTINGS... starts a fresh stemedb-api with the data directory
# $work/NAME and the given STEMEDB_* settings, and sets node_port and node_pid. The
# settings are exported inside a subshell, so the root key never shows in a command line.
start_node() {
	local name=$1
	shift
	node_port=$(free_port)
	mkdir -p "$work/$name"
	(
		# shellcheck disable=SC2163 # "$@" holds NAME=VALUE words, which export takes as they are.
		export "$@" STEMEDB_DATA_DIR="$work/$name" STEMEDB_API_LISTEN="127.0.0.1:$node_port" \
			STEMEDB_DURABILITY=immediate STEMEDB_LOG_LEVEL=warn
		exec "$bin/stemedb-api"
	) >>"$work/$name.log" 2>&1 &
	node_pid=$!
	node_pids+=("$node_pid")
	wait_ready "$node_pid" "$node_port" "$work/$name.log"
	log "$name node ready on 127.0.0.1:$node_port (pid $node_pid)"
}

# Stops the protection section's nodes: SIGTERM, then SIGKILL after 30 s.
stop_nodes() {
	local pid
	for pid in "${node_pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${node_pids[@]}"; do
		for _ in $(seq 1 300); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "stemedb-api (pid $pid) did not stop within 30 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	node_pids=()
}

# metric_sum PORT NAME prints the sum of every series of the counter NAME, all label
# values together, from the node's /metrics.
metric_sum() {
	local body
	body=$(curl -sf "http://127.0.0.1:$1/metrics") || fail "reading /metrics on port $1 failed"
	awk -v name="$2" 'index($1, name "{") == 1 || $1 == name { sum += $NF }
		END { printf "%d\n", sum }' <<<"$body"
}

# metric_nonzero PORT NAME prints the series of NAME with a value other than 0.
metric_nonzero() {
	curl -sf "http://127.0.0.1:$1/metrics" | awk -v name="$2" \
		'(index($1, name "{") == 1 || $1 == name) && $NF != 0 { printf "%s ", $0 }'
}

# cpu_ticks PID prints the user plus system clock ticks that the process has used.
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# node_loadgen PORT ARGS... runs loadgen against a protection node and prints the result
# line. Every protection run sends the root key as X-API-Key (from the environment, so
# that it stays out of the process list) and X-Agent-Id. Its subjects end in a hash, so
# that content defense does not take them for near-duplicates. The "off" node gets the
# same requests and ignores the headers.
node_loadgen() {
	local node=$1
	shift
	STEMEDB_API_KEY=$root_key "$bin/loadgen" "$@" --port "$node" --agent-header on \
		--distinct-subjects on 2>>"$work/loadgen.log" | grep '^result '
}

# warm_up NAME PORT writes BENCH_WARMUP_PER_AGENT claims per loadgen agent, untimed,
# then one claim per agent until no agent is asked for a proof of work, and records how
# long that took and how many proofs loadgen solved.
warm_up() {
	local name=$1 node=$2 began line round proofs pow_seconds quarantined
	began=$(date +%s.%N)
	line=$(node_loadgen "$node" warmup --per-agent "$warmup_per_agent" --clients "$clients" \
		--tag w0 --max-seconds 600) || fail "the $name warm-up failed: $(tail -n 3 "$work/loadgen.log")"
	log "$name warm-up: $line"
	proofs=$(field proofs "$line")
	pow_seconds=$(field pow_seconds "$line")
	quarantined=$(field quarantined "$line")
	for round in $(seq 1 "$warmup_check_rounds"); do
		line=$(node_loadgen "$node" warmup --per-agent 1 --clients 16 --tag "w$round" --max-seconds 60) ||
			fail "the $name warm-up check failed: $(tail -n 3 "$work/loadgen.log")"
		proofs=$((proofs + $(field proofs "$line")))
		pow_seconds=$(calc "$pow_seconds + $(field pow_seconds "$line")")
		quarantined=$((quarantined + $(field quarantined "$line")))
		[ "$(field proofs "$line")" = 0 ] && break
		[ "$round" -lt "$warmup_check_rounds" ] ||
			fail "the $name node still asks for proofs of work after $round check rounds: $line"
	done
	meta "${name}_warmup_seconds" "$(calc "$(date +%s.%N) - $began")"
	meta "${name}_warmup_proofs" "$proofs"
	meta "${name}_warmup_pow_seconds" "$pow_seconds"
	meta "${name}_warmup_rounds" $((round + 1))
	meta "${name}_warmup_quarantined" "$quarantined"
}

# node_run NAME RUN PORT PID ARGS... runs one timed loadgen pass against a protection
# node and records its rate, its latency and the node's CPU time per assertion. The
# CPU time depends less on other work on a shared machine than the rate does.
node_run() {
	local name=$1 run=$2 node=$3 pid=$4 line before after items
	shift 4
	before=$(cpu_ticks "$pid")
	line=$(node_loadgen "$node" "$@") || fail "loadgen $name run $run failed: $(tail -n 3 "$work/loadgen.log")"
	after=$(cpu_ticks "$pid")
	log "$name run $run: $line"
	[ "$(field proofs "$line")" = 0 ] ||
		fail "$name run $run needed proofs of work although the warm-up left every agent past them: $line"
	items=$(($(field created "$line") + $(field quarantined "$line")))
	record "${name}_rate" "$run" "$(field items_per_sec "$line")"
	record "${name}_p50_ms" "$run" "$(field p50_ms "$line")"
	record "${name}_p99_ms" "$run" "$(field p99_ms "$line")"
	record "${name}_cpu_us" "$run" "$(calc "($after - $before) * 1000000 / $(getconf CLK_TCK) / $items")"
}

# node_pair NAME RUN ARGS... runs one timed pass on each node. Odd runs start with the
# "off" node and even runs with the "on" node, so neither always runs first.
node_pair() {
	local name=$1 run=$2
	shift 2
	if [ $((run % 2)) = 1 ]; then
		node_run "protection_off_$name" "$run" "$off_port" "$off_pid" "$@"
		node_run "protection_on_$name" "$run" "$on_port" "$on_pid" "$@"
	else
		node_run "protection_on_$name" "$run" "$on_port" "$on_pid" "$@"
		node_run "protection_off_$name" "$run" "$off_port" "$off_pid" "$@"
	fi
}

# Measures ingest on a fresh node with every protection layer off next to a fresh node
# with every layer on, both warmed up with the same claims, in alternating runs. Fails
# when the "on" node rejects or quarantines anything during the timed runs, because the
# section measures what the checks cost, not what rejections save.
bench_protection() {
	local run rejected_before rejected_after quarantined_before quarantined_after
	root_key=$("$bin/stemedb-ctl" keys generate) || fail "stemedb-ctl keys generate failed"
	meta protection_date "$(date -u '+%Y-%m-%d %H:%M UTC')"
	meta protection_load_average "$(cut -d' ' -f1-3 /proc/loadavg)"
	meta protection_quota_tokens "$protection_quota_tokens"
	meta protection_warmup_per_agent "$warmup_per_agent"

	start_node protection-off "${layers_off[@]}"
	off_port=$node_port
	off_pid=$node_pid
	start_node protection-on STEMEDB_AUTH_ENABLED=true STEMEDB_ROOT_API_KEY="$root_key" \
		STEMEDB_RATE_LIMIT_ENABLED=true STEMEDB_CIRCUIT_BREAKER_ENABLED=true \
		STEMEDB_ADMISSION_ENABLED=true STEMEDB_QUOTA_ENABLED=true \
		STEMEDB_QUOTA_TOKENS="$protection_quota_tokens" STEMEDB_CONTENT_DEFENSE_ENABLED=true \
		STEMEDB_MAX_CONNECTIONS_PER_CLIENT="$protection_connections_per_client"
	on_port=$node_port
	on_pid=$node_pid
	# The settings took effect: the "on" node requires an API key, the "off" node does not.
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$on_port/v1/agents/$(printf '%064d' 0)")" = 401 ] ||
		fail "the node with every layer on answered a request without an API key; check the STEMEDB_AUTH_ENABLED setting"
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$off_port/v1/agents/$(printf '%064d' 0)")" != 401 ] ||
		fail "the node with every layer off requires an API key"

	warm_up protection_off "$off_port"
	warm_up protection_on "$on_port"
	rejected_before=$(metric_sum "$on_port" stemedb_requests_rejected_total)
	quarantined_before=$(metric_sum "$on_port" stemedb_assertions_quarantined_total)
	meta protection_rejected_warmup "$rejected_before"

	for run in $(seq 1 "$runs"); do
		node_pair single "$run" single --count "$single_count" --clients "$clients" \
			--tag "ps$run" --max-seconds 60
	done
	for run in $(seq 1 "$runs"); do
		node_pair batch "$run" batch --count "$batch_count" --batch-size "$batch_size" \
			--clients "$batch_clients" --tag "pb$run" --max-seconds 120
	done

	rejected_after=$(metric_sum "$on_port" stemedb_requests_rejected_total)
	quarantined_after=$(metric_sum "$on_port" stemedb_assertions_quarantined_total)
	meta protection_rejected_timed $((rejected_after - rejected_before))
	meta protection_quarantined_timed $((quarantined_after - quarantined_before))
	meta protection_quarantined_total "$quarantined_after"
	meta protection_load_average_end "$(cut -d' ' -f1-3 /proc/loadavg)"
	[ "$rejected_after" = "$rejected_before" ] ||
		fail "the protected node rejected $((rejected_after - rejected_before)) requests or assertions during the timed runs: $(metric_nonzero "$on_port" stemedb_requests_rejected_total)"
	log "protection: no rejections in the timed runs; $quarantined_after assertions quarantined in all"
	stop_nodes
}

# ---- PostgreSQL 15 --------------------------------------------------------------------

psql_run() {
	"$pg_bin/psql" -h "$work/pg-socket" -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

start_postgres() {
	pg_data=$work/pg/data
	mkdir -p "$work/pg" "$work/pg-socket"
	chown postgres:postgres "$work/pg" "$work/pg-socket"
	runuser -u postgres -- "$pg_bin/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 \
		--no-instructions >"$work/initdb.log" 2>&1 || fail "initdb failed: $(tail -n 5 "$work/initdb.log")"
	# No TCP listener at all: clients reach the server through the socket directory.
	runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -l "$work/pg/postgres.log" -w -t 60 \
		-o "-c listen_addresses='' -c unix_socket_directories='$work/pg-socket' -c port=5432 -c fsync=on -c synchronous_commit=on -c max_connections=100" \
		start >/dev/null || fail "PostgreSQL did not start: $(tail -n 5 "$work/pg/postgres.log")"
	psql_run -f "$root/bench/pg_schema.sql"
	meta pg_version "$(psql_run -c 'SHOW server_version')"
	meta pg_shared_buffers "$(psql_run -c 'SHOW shared_buffers')"
	meta pg_settings "fsync=$(psql_run -c 'SHOW fsync'), synchronous_commit=$(psql_run -c 'SHOW synchronous_commit'), wal_sync_method=$(psql_run -c 'SHOW wal_sync_method')"
}

# One 104-byte signature record (agent id, signature, u64 timestamp) as a bytea literal,
# the size of one StemeDB signature. PostgreSQL stores it and never verifies it.
signature_literal() {
	printf "'\\\\x%s'::bytea" "$(head -c 104 /dev/urandom | od -An -tx1 -v | tr -d ' \n')"
}

write_pg_scripts() {
	local signature k
	signature=$(signature_literal)
	cat >"$work/pg-single.sql" <<-EOF
		\\set n random(1, 1000000000000)
		\\set tier random(0, 5)
		\\set confidence random(300000, 1000000)
		INSERT INTO assertions VALUES (sha256(('single-' || :client_id || '-' || :n)::bytea), 'bench/pg-single/' || :client_id || '/' || :n, 'bench_value', '{"type": "text", "value": "value-3"}', :confidence / 1000000.0, :tier, 0, 1760000000, $signature) ON CONFLICT (hash) DO NOTHING;
	EOF
	# One statement inserts batch_size rows. The rows travel as literals, signatures
	# included, and the per-transaction variables appear only once, because pgbench
	# limits the number of variables in a prepared statement.
	{
		echo '\set n random(1, 1000000000000)'
		echo 'INSERT INTO assertions SELECT sha256((:client_id || '"'"'-'"'"' || :n || '"'"'-'"'"' || k)::bytea),'
		echo "  'bench/pg-batch/' || :client_id || '/' || :n || '/' || k, 'bench_value',"
		echo '  jsonb_build_object('"'"'type'"'"', '"'"'text'"'"', '"'"'value'"'"', value), confidence, tier, 0, ts, signature'
		echo 'FROM (VALUES'
		for k in $(seq 0 $((batch_size - 1))); do
			printf "(%d, 'value-%d', 0.%03d, %d, %d, %s)" \
				"$k" $((k % 7)) $((300 + k * 7 % 700)) $((k % 6)) $((1760000000 + k)) "$signature"
			[ "$k" -lt $((batch_size - 1)) ] && echo ","
		done
		echo ') AS batch(k, value, confidence, tier, ts, signature)'
		echo 'ON CONFLICT (hash) DO NOTHING;'
	} >"$work/pg-batch.sql"
	cat >"$work/pg-query.sql" <<-EOF
		\\set s random(0, $((subjects - 1)))
		SELECT hash, object, confidence, source_class, signatures FROM assertions WHERE subject = 'bench/q/' || :s AND predicate = 'bench_claim' ORDER BY source_class, confidence DESC LIMIT 1;
	EOF
}

# run_pgbench NAME RUN CLIENTS DURATION SCRIPT ROWS_PER_TRANSACTION
run_pgbench() {
	local name=$1 run=$2 nclients=$3 duration=$4 script=$5 rows=$6 out tps logs
	logs=$work/pglog-$name-$run
	rm -rf "$logs" && mkdir -p "$logs"
	out=$("$pg_bin/pgbench" -h "$work/pg-socket" -p 5432 -U postgres -n -M prepared -c "$nclients" \
		-j 2 -T "$duration" -f "$script" -l --log-prefix="$logs/tx" postgres 2>&1) ||
		fail "pgbench $name run $run failed: $(tail -n 5 <<<"$out")"
	grep -q 'number of failed transactions: 0' <<<"$out" ||
		fail "pgbench $name run $run had failed transactions: $(grep 'failed' <<<"$out")"
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")
	[ -n "$tps" ] || fail "pgbench $name run $run printed no tps line: $(tail -n 5 <<<"$out")"
	if [ "$run" = warmup ]; then
		rm -rf "$logs"
		return 0
	fi
	local latency
	latency=$("$python" "$root/bench/report.py" pgbench-latency "$logs"/tx*)
	rm -rf "$logs"
	log "$name run $run: tps=$tps rows_per_sec=$(calc "$tps * $rows") $latency"
	record "${name}_rate" "$run" "$(calc "$tps * $rows")"
	record "${name}_p50_ms" "$run" "$(field p50_ms "$latency")"
	record "${name}_p99_ms" "$run" "$(field p99_ms "$latency")"
}

bench_pg_writes() {
	local run
	for run in $(seq 1 "$runs"); do
		run_pgbench pg_single "$run" "$clients" "$seconds" "$work/pg-single.sql" 1
	done
	for run in $(seq 1 "$runs"); do
		run_pgbench pg_batch "$run" "$batch_clients" "$seconds" "$work/pg-batch.sql" "$batch_size"
	done
}

# Loads the very rows the StemeDB preload wrote, then vacuums and analyzes as an
# operator would after a bulk load.
bench_pg_load() {
	local begin rows
	begin=$(date +%s.%N)
	psql_run -c "\\copy assertions FROM '$work/preload.copy'" || fail "COPY of the preloaded rows failed"
	psql_run -c 'VACUUM ANALYZE assertions'
	record pg_copy_seconds 1 "$(calc "$(date +%s.%N) - $begin")"
	rows=$(psql_run -c "SELECT count(*) FROM assertions WHERE subject LIKE 'bench/q/%'")
	[ "$rows" -eq $((subjects * per_subject)) ] ||
		fail "PostgreSQL holds $rows preloaded rows, expected $((subjects * per_subject))"
	meta pg_rows "$(psql_run -c 'SELECT count(*) FROM assertions')"
}

bench_pg_queries() {
	local run
	run_pgbench pg_query warmup "$clients" 3 "$work/pg-query.sql" 1
	for run in $(seq 1 "$runs"); do
		run_pgbench pg_query "$run" "$clients" "$seconds" "$work/pg-query.sql" 1
	done
}

# ---- Machine description and the page ----------------------------------------------------

describe_machine() {
	local source device
	meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
	meta command "${BENCH_COMMAND:-${only:+BENCH_ONLY=$only }make bench}"
	meta commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	meta cores "$(nproc)"
	meta cpu_model "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
	meta memory "$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
	meta kernel "$(uname -r)"
	source=$(findmnt -n -o SOURCE -T "$work")
	device=$(basename "$source")
	meta disk "$source ($(findmnt -n -o FSTYPE -T "$work"), $(findmnt -n -o OPTIONS -T "$work" | cut -d, -f1-3), rotational=$(cat "/sys/block/$device/queue/rotational" 2>/dev/null || echo unknown))"
	meta data_dir_parent "${BENCH_DIR:-/tmp}"
	meta libsodium "$(pkg-config --modversion libsodium 2>/dev/null || echo unknown)"
	meta wrk "$(dpkg-query -W -f='${Version}' wrk 2>/dev/null)"
	meta load_average "$(cut -d' ' -f1-3 /proc/loadavg)"
	meta runs "$runs"
	meta subjects "$subjects"
	meta per_subject "$per_subject"
	meta single_count "$single_count"
	meta batch_count "$batch_count"
	meta batch_size "$batch_size"
	meta batch_clients "$batch_clients"
	meta clients "$clients"
	meta seconds "$seconds"
	meta view_runs "$view_runs"
	meta vote_percent "$vote_percent"
	meta h2_requests "$h2_requests"
	meta h2_streams "$h2_streams"
	meta h2_mux_requests "$h2_mux_requests"
	meta h2_mux_runs "$h2_mux_runs"
	meta h2_timeout "$h2_timeout"
	meta h2load "$(dpkg-query -W -f='${Version}' nghttp2-client 2>/dev/null)"
}

main() {
	check_tools
	work=$(mktemp -d "${BENCH_DIR:-/tmp}/stemedb-bench.XXXXXX")
	chmod 755 "$work"
	trap cleanup EXIT INT TERM
	# Run copies, so that a rebuild during the run changes neither the programs under
	# test nor the symbols perf resolves.
	mkdir -p "$work/bin"
	cp "$bin/stemedb-api" "$bin/loadgen" "$bin/stemedb-ctl" "$work/bin/"
	[ -n "$only" ] || cp "$bin/physical_limits" "$work/bin/"
	bin=$work/bin
	: >"$work/results.tsv"
	: >"$work/meta.tsv"
	describe_machine

	if [ "$only" = protection ]; then
		log "protection layers: ingest with every layer off and on ($runs runs each)"
		bench_protection
		"$python" "$root/bench/report.py" protection "$work" "$output"
		log "wrote the protection section of $output in $(($(date +%s) - started)) s"
		return 0
	fi

	log "physical limits"
	bench_physical

	start_stemedb
	log "StemeDB writes ($runs runs each)"
	bench_stemedb_writes
	log "StemeDB preload of $((subjects * per_subject)) claims"
	bench_stemedb_preload
	log "StemeDB authority-lens queries"
	bench_stemedb_queries
	log "StemeDB skeptic and layered views ($view_runs runs each)"
	bench_stemedb_views
	log "StemeDB signed votes on $vote_percent% of the subjects, then vote-lens queries"
	bench_stemedb_votes
	log "profiles"
	profile_stemedb
	log "StemeDB authority queries with h2load over HTTP/1.1 and h2c"
	bench_stemedb_http2
	stop_stemedb
	log "protection layers: ingest with every layer off and on ($runs runs each)"
	bench_protection

	start_postgres
	write_pg_scripts
	log "PostgreSQL writes"
	bench_pg_writes
	log "PostgreSQL load of the same $((subjects * per_subject)) rows"
	bench_pg_load
	log "PostgreSQL best-claim queries"
	bench_pg_queries
	stop_postgres

	meta load_average_end "$(cut -d' ' -f1-3 /proc/loadavg)"
	meta total_seconds $(($(date +%s) - started))
	"$python" "$root/bench/report.py" render "$work" "$output"
	log "wrote $output in $(($(date +%s) - started)) s"
}

# Sourcing this file (for example to test one function) defines everything and runs nothing.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	main
fi
