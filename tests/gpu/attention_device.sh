#!/bin/sh
# Runs the attention GPU test and benchmark on a GPU machine from a binary built elsewhere (the device machines
# have no Check or cJSON; the binary needs neither), in the repository root: the mma variants in one process,
# each wgmma variant in its own (a hang then costs one variant, not the run), then a summary and a look at the
# machine code (HGMMA / HMMA counts, local memory traffic). Logs go to $OUT/attention.log.
# SANITIZE (see below) adds compute-sanitizer runs of some variants.
#   tests/gpu/attention_device.sh [path/to/test_attention]
BIN=${1:-build-attn/tests/test_attention}
OUT=${OUT:-/tmp/attention-out}
LOG=$OUT/attention.log
CUBINS=/tmp/attention-cubins
mkdir -p "$OUT" "$CUBINS"
nv=$(ldconfig -p 2>/dev/null | grep -o '/[^ ]*libnvrtc\.so\.1[23]$' | head -1)
[ -n "$nv" ] || nv=$(find /usr/local /opt /usr/lib -name 'libnvrtc.so.1[23]' 2>/dev/null | head -1)
[ -n "$nv" ] && export LD_LIBRARY_PATH="$(dirname "$nv")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "nvrtc: $nv" | tee "$LOG"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv |
  tee -a "$LOG"
date -u +"date: %Y-%m-%d %H:%M UTC" | tee -a "$LOG"

timeout 300 "$BIN" --only 'mma*' --dump "$CUBINS" >>"$LOG" 2>&1
echo "mma: rc=$?" | tee -a "$LOG"
for v in $("$BIN" --list | grep '^wgmma'); do
  timeout 60 "$BIN" --only "$v" --dump "$CUBINS" >>"$LOG" 2>&1
  echo "$v: rc=$?" | tee -a "$LOG"
done

# SANITIZE="variant,variant": those variants again under compute-sanitizer (memcheck, racecheck, synccheck) on the
# short cases only.
if [ -n "$SANITIZE" ] && command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck; do
    timeout 120 compute-sanitizer --tool $tool --print-limit 5 "$BIN" --only "$SANITIZE" --no-bench --max-seq 400 \
      >"/tmp/san-$tool.log" 2>&1
    rc=$?
    summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "/tmp/san-$tool.log" | tr '\n' ' ')
    echo "sanitizer $tool: rc=$rc $summary" | tee -a "$LOG"
    grep -E "^=+ +(Invalid|Race|Barrier|Error|ERROR)" "/tmp/san-$tool.log" | head -5 | tee -a "$LOG"
  done
fi

echo "== failures" ; grep -E "FAIL|FATAL|failed|error" "$LOG" | head -40
echo "== benchmark"; grep -E "^  bench" "$LOG" | sed 's/  bench //'
echo "== variants"; grep -E "^(mma|wgmma)-[^ ]+ +[0-9]+ " "$LOG"
if command -v cuobjdump >/dev/null; then
  echo "== sass (HGMMA HMMA LDL STL per cubin)"
  for f in "$CUBINS"/*.cubin; do
    cuobjdump -sass "$f" >/tmp/sass.txt 2>&1
    printf '%-34s %5d %5d %5d %5d\n' "$(basename "$f" .cubin)" "$(grep -c HGMMA /tmp/sass.txt)" \
      "$(grep -c HMMA /tmp/sass.txt)" "$(grep -c 'LDL' /tmp/sass.txt)" "$(grep -c 'STL' /tmp/sass.txt)"
  done | tee -a "$LOG"
fi
