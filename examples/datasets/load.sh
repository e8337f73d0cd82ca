#!/usr/bin/env bash
# Imports every example source into a running StemeDB node in one command, fetching
# the npm packages first when they are not cached.
#
#   examples/datasets/load.sh [URL]     (default $STEMEDB_API_URL or http://127.0.0.1:18180)
#
# Uses build/bin/stemedb-ctl unless STEMEDB_CTL names another binary. Exit status: 0
# when every import succeeded, 1 when some items were rejected, 2 when an import
# could not run (usage or transport error). The first such error stops the load.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
url=${1:-${STEMEDB_API_URL:-http://127.0.0.1:18180}}
ctl=${STEMEDB_CTL:-$root/build/bin/stemedb-ctl}
cache="$here/cache"

if [ ! -x "$ctl" ]; then
  echo "load: $ctl not found; run make first or set STEMEDB_CTL" >&2
  exit 2
fi
"$here/fetch.sh" || exit 2
# Git does not keep file modes other than the executable bit, and the keys are
# meant to be private, so restore 0600 before use.
chmod 600 "$here"/keys/*.key

# mapping | key | source class | data file (relative to cache/)
imports=(
  "world-countries|world-countries|expert|world-countries/package/countries.json"
  "countries-list|countries-list|community|countries-list/package/countries.min.json"
  "world-countries-capitals|world-countries-capitals|community|world-countries-capitals/package/data/data.json"
  "periodic-table|periodic-table|community|periodic-table/package/data.json"
  "chemical-elements|chemical-elements|expert|chemical-elements/elements.json"
  "chemical-elements-isotopes|chemical-elements|expert|chemical-elements/isotopes.json"
)
for mapping in "$here"/mappings/country-json-*.json; do
  name=$(basename "$mapping" .json)
  imports+=("$name|country-json|anecdotal|country-json/package/src/country-by-${name#country-json-}.json")
done

status=0
for entry in "${imports[@]}"; do
  IFS='|' read -r mapping key class data <<<"$entry"
  echo "== $mapping ($class)"
  "$ctl" --url "$url" import --mapping "$here/mappings/$mapping.json" \
    --key "$here/keys/$key.key" --source-class "$class" "$cache/$data"
  rc=$?
  if [ "$rc" -ge 2 ]; then
    echo "load: importing $mapping failed (exit $rc); stopping" >&2
    exit 2
  fi
  [ "$rc" -eq 1 ] && status=1
done
echo "load: done; try: $ctl --url $url skeptic --subject country/BO --predicate capital --names $here/keys"
exit "$status"
