#!/usr/bin/env bash
# Disaster-recovery drill. It runs a node with WAL archiving in a temporary directory
# and writes signed data in three phases: before the backup, before the restore
# point, and after it. It takes a backup, destroys the data directory, and restores it
# twice: from the backup alone, and from the archived WAL to the point in time
# between the second and the third phase. Each restored node must hold exactly the assertions
# written before its target and none written later. Prints PASS or FAIL and exits 0
# or 1 accordingly.
#
#   scripts/dr-drill.sh [BUILD_DIR]     (default $STEMEDB_BUILD, else ./build)
#
# Everything runs on 127.0.0.1 with free ports. Set DRILL_KEEP=1 to keep the work
# directory for inspection. Needs curl and python3.

set -euo pipefail

BUILD=${1:-${STEMEDB_BUILD:-build}}
BIN=$(cd "$BUILD/bin" && pwd)
WORK=$(mktemp -d /tmp/stemedb-dr-drill.XXXXXX)
DATA=$WORK/data
ARCHIVE=$WORK/archive
BACKUP=$WORK/backup
API_PID=
ARCHIVER_PID=
PORT=

log() { printf '%s dr-drill: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

fail() {
	log "FAIL: $*"
	echo "FAIL"
	exit 1
}

cleanup() {
	[ -n "$ARCHIVER_PID" ] && kill "$ARCHIVER_PID" 2>/dev/null && wait "$ARCHIVER_PID" 2>/dev/null
	[ -n "$API_PID" ] && kill "$API_PID" 2>/dev/null && wait "$API_PID" 2>/dev/null
	if [ "${DRILL_KEEP:-0}" = 1 ]; then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Replaces the calling (background) subshell with a daemon whose environment contains
# only the StemeDB variables given here. $! is then the daemon's PID, and a stray
# variable from the caller's environment cannot change the drill.
exec_clean() {
	exec env -i PATH="$PATH" HOME="${HOME:-/tmp}" "$@"
}

start_api() {
	PORT=$(free_port)
	exec_clean STEMEDB_DATA_DIR="$DATA" STEMEDB_API_LISTEN="127.0.0.1:$PORT" \
		STEMEDB_WAL_SEGMENT_BYTES=1048576 STEMEDB_WAL_ARCHIVE="$1" \
		"$BIN/stemedb-api" >>"$WORK/api.log" 2>&1 &
	API_PID=$!
	for _ in $(seq 1 600); do
		if curl -fsS "http://127.0.0.1:$PORT/v1/ready" >/dev/null 2>&1; then
			return 0
		fi
		kill -0 "$API_PID" 2>/dev/null || fail "stemedb-api exited; see $WORK/api.log"
		sleep 0.05
	done
	fail "stemedb-api did not become ready within 30 s"
}

stop_api() {
	kill -TERM "$API_PID"
	wait "$API_PID" || fail "stemedb-api exited with status $? on SIGTERM"
	API_PID=
}

start_archiver() {
	mkdir -p "$ARCHIVE"
	exec_clean STEMEDB_DATA_DIR="$DATA" STEMEDB_WAL_ARCHIVE_DIR="$ARCHIVE" \
		STEMEDB_WAL_ARCHIVE_INTERVAL_MS=100 STEMEDB_WAL_ARCHIVE_RETRY_INITIAL_MS=100 \
		"$BIN/stemedb-walarchiver" >>"$WORK/walarchiver.log" 2>&1 &
	ARCHIVER_PID=$!
}

stop_archiver() {
	kill -TERM "$ARCHIVER_PID"
	wait "$ARCHIVER_PID" || fail "stemedb-walarchiver exited with status $? on SIGTERM"
	ARCHIVER_PID=
}

assertion_count() {
	curl -fsS "http://127.0.0.1:$PORT/v1/health" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["assertions_count"])'
}

# Writes COUNT records of phase NAME as JSON Lines and imports them, one signed
# assertion per record, each about 2 KB so that the WAL rotates often.
write_phase() {
	local name=$1 count=$2
	python3 - "$WORK/$name.jsonl" "$name" "$count" <<-'EOF'
		import json, sys
		path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
		with open(path, "w") as f:
		    for i in range(count):
		        f.write(json.dumps({"id": f"{name}-{i}", "payload": f"{name} {i} " + "x" * 2000}) + "\n")
	EOF
	"$BIN/stemedb-ctl" --url "http://127.0.0.1:$PORT" import --mapping "$WORK/mapping.json" \
		--key "$WORK/drill.key" --source-class observational --timestamp 1764000000 \
		--no-progress "$WORK/$name.jsonl" >>"$WORK/import.log" 2>&1 ||
		fail "importing phase $name failed; see $WORK/import.log"
}

# Checks that every subject of the phases in PRESENT exists on the running node and
# that no subject of the phases in ABSENT does.
compare_phases() {
	python3 - "$PORT" "$WORK" "$1" "$2" <<-'EOF'
		import json, sys, urllib.error, urllib.parse, urllib.request
		port, work, present, absent = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
		problems = 0
		def status(subject):
		    url = f"http://127.0.0.1:{port}/v1/subjects/" + urllib.parse.quote(subject, safe="")
		    try:
		        with urllib.request.urlopen(url, timeout=30) as r:
		            return r.status
		    except urllib.error.HTTPError as e:
		        return e.code
		for phases, expected in ((present, 200), (absent, 404)):
		    for phase in phases:
		        with open(f"{work}/{phase}.jsonl") as f:
		            for line in f:
		                subject = "drill/" + json.loads(line)["id"]
		                got = status(subject)
		                if got != expected:
		                    problems += 1
		                    if problems <= 10:
		                        print(f"  {subject}: HTTP {got}, expected {expected}")
		sys.exit(1 if problems else 0)
	EOF
}

wait_archived() {
	local prom=$DATA/run/walarchiver.prom
	for _ in $(seq 1 1200); do
		if grep -qx 'stemedb_wal_archive_lag_segments 0' "$prom" 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	fail "the archiver did not catch up within 60 s; see $WORK/walarchiver.log"
}

now_ms() { date +%s%3N; }

log "work directory $WORK, binaries from $BIN"
cat >"$WORK/mapping.json" <<-'EOF'
	{"subject": "drill/{id}", "predicates": [{"predicate": "payload", "field": "payload", "type": "text"}]}
EOF
"$BIN/stemedb-ctl" keygen --out "$WORK/drill.key" >/dev/null

log "phase 1: start a node with WAL archiving, write, back up"
start_api true
start_archiver
write_phase before 300
count_before=$(assertion_count)
"$BIN/stemedb-ctl" backup --dest "$BACKUP" --data-dir "$DATA" --socket "$DATA/run/api.sock" ||
	fail "the backup failed"
"$BIN/stemedb-ctl" verify --backup "$BACKUP" >"$WORK/verify-backup.log" ||
	fail "the fresh backup does not verify; see $WORK/verify-backup.log"

log "phase 2: write up to the restore point"
write_phase middle 600
count_middle=$(assertion_count)
sleep 1.2
until_ms=$(now_ms)
sleep 1.2

log "phase 3: write after the restore point, wait for the archive"
write_phase after 1500
count_after=$(assertion_count)
wait_archived
stop_archiver
stop_api
log "assertions: $count_before before the backup, $count_middle at the restore point, $count_after in all"

log "disaster: deleting $DATA"
rm -rf "$DATA"

log "restore 1: the backup alone"
"$BIN/stemedb-ctl" restore --backup "$BACKUP" --data-dir "$DATA" >"$WORK/restore-plain.log" ||
	fail "the plain restore failed; see $WORK/restore-plain.log"
start_api false
got=$(assertion_count)
[ "$got" = "$count_before" ] || fail "the plain restore has $got assertions, expected $count_before"
compare_phases "before" "middle after" || fail "the plain restore holds the wrong subjects"
stop_api
"$BIN/stemedb-ctl" verify --data-dir "$DATA" >"$WORK/verify-plain.log" ||
	fail "the plain restore does not verify; see $WORK/verify-plain.log"
rm -rf "$DATA"

until_text=$(python3 -c "import sys; print('%.3f' % (int(sys.argv[1]) / 1000))" "$until_ms")
log "restore 2: point in time $until_text from the archive"
"$BIN/stemedb-ctl" restore --backup "$BACKUP" --data-dir "$DATA" --wal-archive "$ARCHIVE" \
	--until "$until_text" >"$WORK/restore-pitr.log" ||
	fail "the point-in-time restore failed; see $WORK/restore-pitr.log"
start_api false
got=$(assertion_count)
[ "$got" = "$count_middle" ] ||
	fail "the point-in-time restore has $got assertions, expected $count_middle"
compare_phases "before middle" "after" || fail "the point-in-time restore holds the wrong subjects"
stop_api
"$BIN/stemedb-ctl" verify --data-dir "$DATA" >"$WORK/verify-pitr.log" ||
	fail "the point-in-time restore does not verify; see $WORK/verify-pitr.log"

log "every check passed"
echo "PASS"
