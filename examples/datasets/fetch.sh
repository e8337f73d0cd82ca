#!/usr/bin/env bash
# Downloads the pinned npm packages that the example mappings read, with `npm pack`,
# and unpacks each into cache/<name>/package/. Packages already unpacked at the
# pinned version are kept. cache/ is git-ignored: the data is not part of the
# repository. Needs npm and node (Debian packages npm and nodejs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache="$here/cache"

# name@version pins; README.md records what each mapping takes from them.
packages=(
  world-countries@5.1.0
  countries-list@3.4.1
  country-json@2.3.0
  world-countries-capitals@3.4.0
  periodic-table@0.0.8
  chemical-elements@2.3.3
)

for tool in npm node tar; do
  if ! command -v "$tool" >/dev/null; then
    echo "fetch: $tool is not installed; run: apt-get install -y npm nodejs" >&2
    exit 1
  fi
done

unpacked_version() {
  node -e 'console.log(require(process.argv[1]).version)' "$1/package/package.json" 2>/dev/null || true
}

mkdir -p "$cache"
for spec in "${packages[@]}"; do
  name=${spec%@*}
  version=${spec##*@}
  dir="$cache/$name"
  if [ "$(unpacked_version "$dir")" = "$version" ]; then
    echo "fetch: $spec already in cache/$name"
    continue
  fi
  echo "fetch: npm pack $spec"
  rm -rf "$dir"
  mkdir -p "$dir"
  tarball=$(cd "$dir" && npm pack --silent "$spec" | tail -n 1)
  tar -xzf "$dir/$tarball" -C "$dir"
  rm -f "$dir/$tarball"
  if [ "$(unpacked_version "$dir")" != "$version" ]; then
    echo "fetch: cache/$name/package/package.json does not say version $version" >&2
    exit 1
  fi
done

# chemical-elements ships its tables as JavaScript only; export them as JSON.
if [ ! -s "$cache/chemical-elements/isotopes.json" ]; then
  node "$here/export-chemical-elements.js" "$cache/chemical-elements/package" \
    "$cache/chemical-elements"
fi
echo "fetch: done; data is in $cache"
