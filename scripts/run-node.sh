#!/usr/bin/env bash
# Starts a single StemeDB node in the foreground: HTTP API on 127.0.0.1:18180, data
# under ./var (override with STEMEDB_DATA_DIR). Ctrl-C stops it cleanly.
set -euo pipefail

build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
export STEMEDB_DATA_DIR=${STEMEDB_DATA_DIR:-$root/var}
mkdir -p "$STEMEDB_DATA_DIR"
echo "run: starting stemedb-api on ${STEMEDB_API_LISTEN:-127.0.0.1:18180}, data in $STEMEDB_DATA_DIR (Ctrl-C stops it)"
exec "$root/$build/bin/stemedb-api"
