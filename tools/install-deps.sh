#!/bin/sh
# Installs the Debian packages the build and the CPU tests need, if any are missing. Needs root (or sudo) only
# when something is missing. The CUDA toolkit itself is expected to be installed already (headers only are
# used at build time; see docs/user-guide.md).
set -eu
# clang and libclang-rt-dev (its libFuzzer and sanitizer runtimes; only recommended by clang, so named here) build
# the fuzz targets: tools/run_fuzz.sh.
packages="meson ninja-build pkg-config gcc libcjson-dev check libsubunit-dev libpng-dev python3 clang libclang-rt-dev"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "install-deps: error: these Debian packages are missing and this user cannot install them:$missing" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
