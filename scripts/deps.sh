#!/usr/bin/env bash
# Installs the Debian packages that building, running and testing StemeDB need.
# Prints nothing and changes nothing when every package is already installed.
set -euo pipefail

packages=(
  build-essential pkg-config clang-format cppcheck
  librocksdb-dev libevent-dev libjansson-dev libsodium-dev libsystemd-dev
  libcurl4-openssl-dev libcmocka-dev libprotobuf-c-dev protobuf-c-compiler
  clang libclang-rt-14-dev
  nginx prometheus curl openssl iproute2 systemd util-linux
  python3 python3-pytest python3-requests python3-nacl python3-yaml
  xxd nghttp2-client libnghttp2-dev libssl-dev
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
# The example datasets are fetched with npm. Machines that already carry a Node.js
# build from another source have npm without Debian's package, which would conflict.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages: ${missing[*]}; run 'make deps' as root or install them with apt-get" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
