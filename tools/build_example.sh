#!/bin/sh
# Builds docs/example.c the way an application would: against the library installed (into a temporary prefix)
# through pkg-config, then runs it on a tiny pipeline plan compiled from tests/data/golden/pipeline_tiny.
#   tools/build_example.sh [BUILD_DIR]     (make example)
set -eu
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT

meson install -C "$build" --destdir "$dest" --no-rebuild --quiet
pc=$(find "$dest" -name qd.pc | head -n 1)
lib=$(find "$dest" -name 'libqd.so' | head -n 1)
if [ -z "$pc" ] || [ -z "$lib" ]; then
  echo "build_example: error: the install under $dest has no qd.pc or libqd.so" >&2
  exit 1
fi
# The .pc file names the configured prefix; the sysroot puts the temporary install in front of its paths.
export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$dest"
flags=$(pkg-config --cflags --libs qd)
echo "build_example: cc docs/example.c $flags"
# shellcheck disable=SC2086
${CC:-cc} -std=c17 -Wall -Wextra -Werror "$root/docs/example.c" $flags -o "$dest/example"

"$build/qdc" compile "$root/tests/data/golden/pipeline_tiny" -o "$dest/tiny.qplan" --quant none \
  --resolutions 64x48 --target none -q
LD_LIBRARY_PATH="$(dirname "$lib")" "$dest/example" "$dest/tiny.qplan" "a tiny red fox" "$dest/example.png" 7
test -s "$dest/example.png"
echo "build_example: docs/example.c built against the installed library and generated an image"
