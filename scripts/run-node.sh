#!/usr/bin/env bash
# Development supervisor behind `make run`: starts the node's daemons without
# systemd (stemedb-api, then stemedb-gateway and stemedb-walarchiver when they are
# built), with data under ./var unless STEMEDB_DATA_DIR is set. Each log line is
# prefixed with the daemon's name. Ctrl-C (SIGINT) or SIGTERM stops every daemon
# and exits 0. When one daemon exits on its own, the others are stopped and the
# script exits with that daemon's status (1 when it was 0).
#
# Usage: run-node.sh [BUILD]   (BUILD defaults to "build")
set -uo pipefail

build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$root/$build/bin"
export STEMEDB_DATA_DIR=${STEMEDB_DATA_DIR:-$root/var}
# stemedb-walarchiver needs an archive target; default to a directory beside the
# data, as the systemd units do, unless a directory or a command is configured.
if [ -z "${STEMEDB_WAL_ARCHIVE_DIR:-}" ] && [ -z "${STEMEDB_WAL_ARCHIVE_COMMAND:-}" ]; then
  export STEMEDB_WAL_ARCHIVE_DIR="$STEMEDB_DATA_DIR/archive"
fi
export STEMEDB_WAL_ARCHIVE=${STEMEDB_WAL_ARCHIVE:-true}
# Trust outcomes are records that the gateway signs with an operator key and that
# stemedb-api accepts. Create the key beside the data on first run, unless both sides are
# configured already.
if [ -z "${STEMEDB_ADMIN_SIGNING_KEY_FILE:-}" ] && [ -z "${STEMEDB_TRUST_AUTHORITY_KEYS:-}" ]; then
  operator_key="$STEMEDB_DATA_DIR/operator.key"
  mkdir -p "$STEMEDB_DATA_DIR"
  if [ ! -f "$operator_key" ]; then
    "$bin_dir/stemedb-ctl" keygen --out "$operator_key" >/dev/null || exit 1
  fi
  export STEMEDB_ADMIN_SIGNING_KEY_FILE="$operator_key"
  STEMEDB_TRUST_AUTHORITY_KEYS=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["agent_id"])' "$operator_key") || exit 1
  export STEMEDB_TRUST_AUTHORITY_KEYS
fi
api_listen=${STEMEDB_API_LISTEN:-127.0.0.1:18180}
ready_timeout=${RUN_READY_TIMEOUT:-120}
stop_timeout=${RUN_STOP_TIMEOUT:-30}

names=()
declare -A pids=()

log() {
  echo "run: $*" >&2
}

# Starts one daemon in its own session, so that Ctrl-C in the terminal reaches
# only this script, which then stops the daemons in order. The log prefixer runs
# in its own session as well, so it outlives the daemon's last line.
start_daemon() {
  local name=$1 binary="$bin_dir/stemedb-$1"
  setsid "$binary" > >(setsid sed -u "s/^/$(printf '%-11s' "$name")| /") 2>&1 &
  pids[$name]=$!
  names+=("$name")
  log "started stemedb-$name (pid ${pids[$name]})"
}

# Waits until GET /v1/ready returns 200, so that the other daemons find api.sock.
wait_api_ready() {
  local deadline=$((SECONDS + ready_timeout))
  while ((SECONDS < deadline)); do
    if curl -sf -o /dev/null -m 2 "http://$api_listen/v1/ready"; then
      log "stemedb-api is ready on $api_listen"
      return 0
    fi
    if ! kill -0 "${pids[api]}" 2>/dev/null; then
      return 1
    fi
    sleep 0.2
  done
  log "stemedb-api was not ready on $api_listen after $ready_timeout s"
  return 1
}

# Sends SIGTERM to every running daemon, newest first, and waits for each; a
# daemon still running after $stop_timeout s gets SIGKILL.
stop_all() {
  local i name pid deadline
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do
    name=${names[i]}
    pid=${pids[$name]}
    kill -0 "$pid" 2>/dev/null || continue
    log "stopping stemedb-$name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    deadline=$((SECONDS + stop_timeout))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "stemedb-$name did not stop within $stop_timeout s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
  done
}

on_signal() {
  log "stop requested"
  stop_all
  log "all daemons stopped"
  exit 0
}

name_of_pid() {
  local name
  for name in "${names[@]}"; do
    if [ "${pids[$name]}" = "$1" ]; then
      echo "$name"
      return
    fi
  done
}

if [ ! -x "$bin_dir/stemedb-api" ]; then
  log "$bin_dir/stemedb-api is missing; run 'make' first"
  exit 1
fi
mkdir -p "$STEMEDB_DATA_DIR" || exit 1
if [ -n "${STEMEDB_WAL_ARCHIVE_DIR:-}" ]; then
  mkdir -p "$STEMEDB_WAL_ARCHIVE_DIR" || exit 1
fi
trap on_signal INT TERM
log "data in $STEMEDB_DATA_DIR; Ctrl-C stops every daemon"

start_daemon api
if ! wait_api_ready; then
  stop_all
  exit 1
fi
for name in gateway walarchiver; do
  if [ -x "$bin_dir/stemedb-$name" ]; then
    start_daemon "$name"
  else
    log "$bin_dir/stemedb-$name is not built; running without it"
  fi
done

# A daemon that exits while the others run stops the whole node, because a
# partial node (an API without its archiver, say) would hide the failure.
while true; do
  exited_pid=
  wait -n -p exited_pid "${pids[@]}"
  status=$?
  [ -n "$exited_pid" ] || continue
  name=$(name_of_pid "$exited_pid")
  log "stemedb-$name exited with status $status; stopping the other daemons"
  stop_all
  if [ "$status" -eq 0 ]; then
    status=1
  fi
  exit "$status"
done
