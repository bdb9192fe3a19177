#!/bin/sh
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, AddressSanitizer and UndefinedBehaviorSanitizer,
# and runs each for a bounded time on its seeds, all targets at once (one core each). Any crash, leak, sanitizer
# report or timeout fails the run; the input that caused it is kept as BUILD_DIR/crash-<target>-*.
#
#   tools/run_fuzz.sh [BUILD_DIR [SECONDS]]      (defaults: build-fuzz, 30; `make fuzz` runs this, `make test` too)
#
# Why not meson: libFuzzer needs clang while the main build uses the default compiler, and a second meson build
# would compile all of libqd with clang. Each target needs only its parser and the base library, listed below; if a
# parser gains a dependency, add its source to the target's list.
set -eu

out=${1:-build-fuzz}
secs=${2:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
cc=${FUZZ_CC:-clang}

if ! command -v "$cc" >/dev/null 2>&1; then
  echo "run_fuzz: error: $cc not found; run tools/install-deps.sh (Debian packages clang and libclang-rt-dev)" >&2
  exit 1
fi

base="ir/status.c ir/allocator.c ir/log.c ir/progress.c ir/file_read.c"
# name | sources besides the target and the base library | seed directories (relative to the repository)
targets="
plan_file|runtime/plan_file.c ir/hash64.c|tests/fuzz/seeds/plan
safetensors|ir/safetensors.c ir/strict_json.c ir/dtype.c|tests/data/safetensors_corpus
"

mkdir -p "$out"
# FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION: the plan reader then accepts checksum mismatches (runtime/plan_file.c),
# so that mutated inputs reach the rules behind the checksums.
cflags="-std=c17 -D_GNU_SOURCE -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wall -Wextra -Wno-unused-parameter -Werror -I$root/include -I$root"

# Loops read here-documents, not pipes: a piped loop runs in a subshell, whose background jobs this shell could not
# wait for.
while IFS='|' read -r name srcs seeds; do
  [ -n "$name" ] || continue
  files="$root/tests/fuzz/fuzz_$name.c"
  for f in $srcs $base; do files="$files $root/$f"; done
  # shellcheck disable=SC2086
  $cc $cflags $files -lm -o "$out/fuzz_$name"
done <<EOF
$targets
EOF
echo "run_fuzz: built $(echo "$targets" | grep -c '|') targets with $($cc --version | head -n 1)"

export ASAN_OPTIONS="detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
rm -f "$out"/fuzz_*.pid
while IFS='|' read -r name srcs seeds; do
  [ -n "$name" ] || continue
  corpus="$out/corpus_$name" # kept between runs, so fuzzing accumulates; `make clean` removes it
  mkdir -p "$corpus"
  "$out/fuzz_$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/crash-$name-" "$corpus" "$root/$seeds" >"$out/fuzz_$name.log" 2>&1 &
  echo "$!" >"$out/fuzz_$name.pid"
done <<EOF
$targets
EOF

status=0
for pidfile in "$out"/fuzz_*.pid; do
  name=$(basename "$pidfile" .pid)
  if wait "$(cat "$pidfile")" 2>/dev/null; then rc=0; else rc=$?; fi
  rm -f "$pidfile"
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$name.log" | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "$out/$name.log" | tail -n 1 || true)
  if [ "$rc" -eq 0 ]; then
    echo "run_fuzz: $name: ok, ${runs:-?} inputs in ${secs} s, $cov"
  else
    echo "run_fuzz: $name: FAILED (exit $rc); the log follows, the input is $out/crash-${name#fuzz_}-*" >&2
    tail -n 60 "$out/$name.log" >&2
    status=1
  fi
done
exit $status
