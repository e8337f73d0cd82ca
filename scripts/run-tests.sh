#!/usr/bin/env bash
# Runs the test layers against the binaries in BUILD and prints one closing line
# "tests: N passed, N failed". Usage: run-tests.sh BUILD [unit|python|crash|systemd]...
# With no layer named, runs all of them. Every layer runs even if an earlier one fails.
set -uo pipefail

build=${1:?usage: run-tests.sh BUILD [unit|python|crash|systemd]...}
shift
layers=("$@")
[ ${#layers[@]} -eq 0 ] && layers=(unit python crash systemd)

root=$(cd "$(dirname "$0")/.." && pwd)
export STEMEDB_BUILD="$root/$build"
# Debian's interpreter carries python3-nacl, python3-pytest and python3-requests;
# a python3 earlier on PATH (pyenv, venv) may not.
python=/usr/bin/python3
passed=0
failed=0
report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT

run_unit() {
  local binary out count
  for binary in "$STEMEDB_BUILD"/tests/*/test_*; do
    [ -x "$binary" ] || continue
    echo "== unit: ${binary#"$STEMEDB_BUILD"/tests/}"
    out=$("$binary" 2>&1)
    local status=$?
    echo "$out"
    count=$(grep -oP '^\[  PASSED  \] \K[0-9]+' <<<"$out" | tail -1)
    passed=$((passed + ${count:-0}))
    count=$(grep -oP '^\[  FAILED  \] \K[0-9]+' <<<"$out" | tail -1)
    if [ "$status" -ne 0 ] && [ -z "$count" ]; then
      count=1 # crashed before cmocka could report
    fi
    failed=$((failed + ${count:-0}))
  done
}

run_pytest() {
  local name=$1
  shift
  echo "== $name"
  "$python" -m pytest -q -p no:cacheprovider --junitxml="$report/$name.xml" "$@"
  local counts
  counts=$("$python" - "$report/$name.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print(0, 1)
    sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
total = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(total - bad - skipped, bad)
PY
)
  passed=$((passed + ${counts% *}))
  failed=$((failed + ${counts#* }))
}

for layer in "${layers[@]}"; do
  case "$layer" in
    unit) run_unit ;;
    python) run_pytest python "$root/tests/vectors" "$root/tests/integration" ;;
    crash) run_pytest crash "$root/tests/crash" ;;
    # Boots systemd in private namespaces (root only; skipped otherwise).
    systemd) run_pytest systemd "$root/tests/systemd" ;;
    *) echo "run-tests: unknown layer '$layer'; use unit, python, crash or systemd" >&2; exit 2 ;;
  esac
done

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
